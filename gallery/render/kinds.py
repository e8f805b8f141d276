"""Kinds of layer that render with settings of their own: the coarse layers of plain RGB
conv models, and the layers of models with depthwise convolutions
(:meth:`gallery.config.RenderSettings.for_layer` folds each kind's settings in).

A filter image is held inside a ball (:func:`gallery.render.params.within_contrast`) so
that it shades instead of posterizing. How wide the ball may be depends on the layer:

* a layer that sees the tile at full or half resolution (output stride 1 or 2: VGG16's
  block1 and block2) has units of small receptive fields (14 px for block2_conv2), and its
  sparse filters spend the ball's whole budget on the few spots where they fire. At a
  radius of 2.5 those spots already go black (VGG16-HED block2_conv2, 8 filters: corner
  share 0.017 against the limit 0.005; 3: 0.040), so these keep the radius of 2;
* a coarse layer (output stride 4 or more) spreads its pattern over the tile, and at a
  radius of 3 stays unclipped while its activation rises by a third (block3_conv1 to
  block5_conv3, 16 filters: README, Filter images as pictures);
* a model with depthwise convolutions (MobileNetV2, EfficientNet-Lite0) gained nothing
  from the wider ball (0.99-1.04x on three layers, 8 filters) and clipped more (clip
  0.013-0.015, corner up to 0.004), so its layers keep the radius of 2;
* so does a model that does not take RGB images: a grey model's one channel carries all of
  the contrast, and VGG16-HED made grey went past the corner limit at 3 on block3_conv1
  (0.006, tests/render/test_picture_limits.py); other channel counts are not measured.

Inside the wider ball a coarse layer also takes a shallower spectrum, 1/f^1.25 against the
other layers' 1/f^1.5, which forms finer structure within the 64 steps (VGG16-HED block3_conv1
to block5_conv3, 16 filters). A model with depthwise convolutions is held back by Adam's
step instead: its layers take a smaller one on the same shallower spectrum (MobileNetV2 and
EfficientNet-Lite0, two layers each, 16 filters; README, Filter images as pictures).

Layers linear in the pixels are not bounded and take no kind's settings.
"""

from __future__ import annotations

import keras

from ..model import graph
from ..photos.activations import input_size

COARSE_STRIDE = 4  # a layer whose output is at most 1/4 of its input's side is coarse
PROBE = 224  # the side strides are measured at, for a model that takes any size


def strides(model: keras.Model, layers) -> dict[str, float]:
    """Each layer's output stride: how many input pixels one of its units steps over."""
    side = input_size(model, PROBE)
    shapes = graph.output_shapes(model, side)
    return {layer: side[0] / shapes[layer][0] for layer in layers}


def coarse(model: keras.Model, layers) -> tuple[str, ...]:
    """The layers of ``layers`` whose images take the coarse layers' settings (see above)."""
    layers = list(layers)
    if not layers or graph.has_depthwise(model) or model.inputs[0].shape[-1] != 3:
        return ()
    return tuple(layer for layer, stride in strides(model, layers).items() if stride >= COARSE_STRIDE)
