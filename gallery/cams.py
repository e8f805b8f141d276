"""Class activation maps over one shared pipeline; each method is one weighting function.

The pipeline (after pytorch-grad-cam's design): run the photo to the chosen conv layer
``A`` (``(h, w, k)``), differentiate the pre-softmax class score ``y_c`` with respect
to ``A``, turn ``(A, ∂y_c/∂A)`` into channel weights ``α_k`` with the method's
function, and return ``ReLU(Σ_k α_k A_k)``, upsampled to the photo and scaled to
``[0, 1]``. All requested classes share one backward pass.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from . import grad, graph
from .activations import model_input
from .errors import GalleryError
from .imaging import resize


def gradcam_weights(a, g):
    """Grad-CAM (Selvaraju et al., ICCV 2017): ``α_k = mean_ij ∂y_c/∂A_ij^k``."""
    return ops.mean(g, axis=(1, 2))


def gradcam_pp_weights(a, g):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018), with the exponential-score identity:

    ``α_ij^k = g² / (2 g² + Σ_ab A_ab^k g³)`` and ``w_k = Σ_ij α_ij^k · ReLU(g_ij^k)``.
    """
    g2, g3 = g * g, g * g * g
    denominator = 2.0 * g2 + ops.sum(a, axis=(1, 2), keepdims=True) * g3
    alpha = g2 / ops.where(ops.abs(denominator) > 1e-12, denominator, 1e-12)
    return ops.sum(alpha * ops.relu(g), axis=(1, 2))


METHODS = {"gradcam": gradcam_weights, "gradcam++": gradcam_pp_weights}


def default_layer(model: keras.Model) -> str:
    """The last conv layer before the head, nested backbones included.

    When that conv is followed directly by its normalisation and activation (as in
    EfficientNet's ``top_conv → top_bn → top_activation``), the map is taken after them:
    those are part of the same unit, and the rectified output is what the head pools.
    """
    names = graph.conv_layers(model)
    if not names:
        raise GalleryError(f"model {model.name!r} has no conv layers")
    return graph.follow_pointwise(model, names[-1])


class CamEngine:
    """Grad-CAM family maps for one model and layer; the compiled pass is reused."""

    def __init__(self, model: keras.Model, layer: str | None = None, method: str = "gradcam",
                 preprocess=None, fallback: int = 224):
        if method not in METHODS:
            raise GalleryError(f"CAM method must be one of {', '.join(METHODS)}, got {method!r}")
        if not graph.has_classifier(model):
            raise GalleryError(f"model {model.name!r} has no classifier head, so there are no classes to explain")
        self.model = model
        self.path = graph.locate(model, layer or default_layer(model))
        self.layer = self.path.name
        self.preprocess = preprocess
        self.fallback = fallback
        to_input = graph.input_fn(model, self.path)
        conv = self.path.layer
        self._features = grad.no_grad(lambda x: conv(to_input(x)))
        head = graph.head_fn(model, self.path)
        weigh = METHODS[method]

        def class_score(a, onehot):
            scores = ops.sum(head(a) * onehot, axis=-1)
            return ops.sum(scores), scores

        value_and_grad = grad.value_and_grad(class_score)

        def cams(a, onehot):
            (_, scores), g = value_and_grad(a, onehot)
            weights = weigh(a, g)
            return ops.relu(ops.sum(weights[:, None, None, :] * a, axis=-1)), weights

        self._cams = grad.compile(cams)

    def __call__(self, photo: np.ndarray, classes: Sequence[int]) -> np.ndarray:
        """``(len(classes), H, W)`` float32 maps in ``[0, 1]`` at the photo's own size."""
        return self.explain(photo, classes)[0]

    def explain(self, photo: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(maps, contributions)``: the maps of :meth:`__call__`, and for each class each
        channel's share of the map before the ReLU, ``α_k · mean_ij A_ij^k``."""
        x = model_input(self.model, photo, self.preprocess, self.fallback)
        a = self._features(x)
        n = len(classes)
        a = ops.repeat(a, n, axis=0)
        classes_count = int(self.model.outputs[0].shape[-1])
        for c in classes:
            if not 0 <= int(c) < classes_count:
                raise GalleryError(f"class index {c} is outside 0..{classes_count - 1}")
        onehot = ops.convert_to_tensor(np.eye(classes_count, dtype="float32")[list(classes)])
        maps, weights = self._cams(a, onehot)
        maps = ops.convert_to_numpy(maps).astype("float32")
        mean_activation = ops.convert_to_numpy(ops.mean(a[:1], axis=(1, 2))).astype("float32")
        contributions = ops.convert_to_numpy(weights).astype("float32") * mean_activation
        height, width = photo.shape[:2]
        out = np.stack([resize(m, height, width) for m in maps])
        top = out.max(axis=(1, 2), keepdims=True)
        return np.where(top > 0, out / np.where(top > 0, top, 1), 0).astype("float32"), contributions


def grad_cam(model, image: np.ndarray, class_index: int, *, layer: str | None = None,
             method: str = "gradcam", preprocess=None) -> np.ndarray:
    """A class activation map for ``class_index``: float32 in ``[0, 1]`` at the photo's size."""
    return CamEngine(model, layer, method, preprocess)(image, [class_index])[0]
