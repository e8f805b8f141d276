"""Every way a photo page explains a class, by name: the CAM family over a layer's channels
(:mod:`.cams`) and the pixel attributions (:mod:`.saliency`), behind one constructor."""

from __future__ import annotations

import numpy as np

from ..errors import GalleryError
from .cams import METHODS as CAM_METHODS, CamEngine
from .saliency import LAYER_FREE, PIXEL_METHODS, PixelEngine

METHODS = (*CAM_METHODS, *PIXEL_METHODS)
WEIGHED = tuple(CAM_METHODS)  # the methods that weigh a layer's channels, so have channel contributions


def explainer(model, layer: str | None = None, method: str = "gradcam", preprocess=None, fallback: int = 224):
    """A :class:`CamEngine` or :class:`PixelEngine` for ``method``; both give
    ``explain_batch(photos, classes) -> (maps, contributions)`` with maps in ``[0, 1]`` at
    each photo's size. ``layer`` is ignored by the layer-free methods (saliency, SmoothGrad)."""
    if method not in METHODS:
        raise GalleryError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method in PIXEL_METHODS:
        return PixelEngine(model, None if method in LAYER_FREE else layer, method, preprocess, fallback)
    return CamEngine(model, layer, method, preprocess, fallback)


def grad_cam(model, image: np.ndarray, class_index: int, *, layer: str | None = None,
             method: str = "gradcam", preprocess=None) -> np.ndarray:
    """A map of the evidence for ``class_index``: float32 in ``[0, 1]`` at the photo's size.

    ``method`` is ``"gradcam"``, ``"gradcam++"``, ``"scorecam"``, ``"layercam"``, ``"cam"``
    (for a global-average-pooling → dense head only), ``"saliency"``, ``"smoothgrad"`` or
    ``"guided-gradcam"`` (for a model whose activations are ReLUs).
    """
    return explainer(model, layer, method, preprocess).explain_batch([image], [[class_index]])[0][0][0]
