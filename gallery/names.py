"""The names a person types for methods, preprocessing and backends, and their one home.

Keras-free, so the command line, ``--help`` and the pages can name them without loading a
backend. The modules that implement them (:mod:`gallery.photos.cams`,
:mod:`gallery.photos.saliency`, :mod:`gallery.model.preprocess`) key their own tables by
these names, and tests/cli/test_options.py checks that every table names exactly these.
"""

from __future__ import annotations

# Class activation maps over a CAM layer's channels (gallery.photos.cams), in the order
# --help lists them.
CAM_METHODS = ("gradcam", "gradcam++", "scorecam", "layercam", "cam")
# Pixel attributions that do not depend on a layer: one map per photo and class.
LAYER_FREE = ("saliency", "smoothgrad")
GUIDED = "guided-gradcam"  # guided backpropagation times Grad-CAM, at each CAM layer
PIXEL_METHODS = (*LAYER_FREE, GUIDED)  # gallery.photos.saliency
METHODS = (*CAM_METHODS, *PIXEL_METHODS)  # every way a photo page explains a class

PREPROCESSING = ("caffe", "tf", "torch", "none")  # gallery.model.preprocess.NAMES
BACKENDS = ("tensorflow", "jax", "torch")  # the Keras backends a build may choose
