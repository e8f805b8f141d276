"""Pixel attributions: vanilla saliency, SmoothGrad and Guided Grad-CAM.

Each explains a class by the photo's pixels rather than by a layer's channels, through
``∂y_c/∂x``: the gradient of the pre-softmax class score ``y_c`` with respect to ``x``, the
photo's RGB pixels (``0–255``, at the model's input size, before its preprocessing, so
caffe's BGR flip is already undone and the colours are the photo's own).

* Saliency (Simonyan et al., "Deep Inside Convolutional Networks", ICLR-W 2014):
  ``max_colour |∂y_c/∂x|``.
* SmoothGrad (Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017): the
  mean gradient over ``n`` noisy copies, ``1/n Σ ∂y_c/∂x (x + N(0, σ²))``, then its
  magnitude as for saliency. ``σ`` is a fixed fraction of the photo's pixel range, and the
  noise is seeded, so a rebuild gives the same bytes.
* Guided Grad-CAM (Selvaraju et al., ICCV 2017): guided backpropagation (Springenberg et
  al., 2015; every ReLU's backward rule becomes ``dy · [x > 0] · [dy > 0]``, see
  :mod:`gallery.model.guided`) times the Grad-CAM map of the chosen layer, upsampled to
  the input: a signed RGB image, whose magnitude is its ``[0, 1]`` map.

Saliency and SmoothGrad do not depend on a CAM layer (:data:`LAYER_FREE`). Every method
yields, like the CAM family, one float map in ``[0, 1]`` per photo and class at the
photo's size (:meth:`PixelEngine.explain_batch`), and pictures to show
(:meth:`PixelEngine.pictures`).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import keras
import numpy as np
from keras import ops

from .. import imaging
from ..attribution import SMOOTHGRAD_NOISE, SMOOTHGRAD_SAMPLES
from ..errors import GalleryError
from ..model import grad, graph, guided, preprocess as prep
from ..names import GUIDED, LAYER_FREE, PIXEL_METHODS  # noqa: F401 (LAYER_FREE: units and explain read it here)
from .activations import input_pixels
from .cams import CamEngine, check_classifier, checked_classes, unit_scaled, unit_scaled_at

SMOOTHGRAD_SEED = 0
GRAD_BATCH = 25  # rows per backward pass: fixed, so one compiled signature; divides SMOOTHGRAD_SAMPLES



def key_parts(method: str) -> dict:
    """What a cached map of ``method`` depends on beyond the photo, model and class."""
    if method == "smoothgrad":
        return {"samples": SMOOTHGRAD_SAMPLES, "noise": SMOOTHGRAD_NOISE, "seed": SMOOTHGRAD_SEED}
    return {}


def forward_passes(method: str, classes: int) -> float:
    """What one photo's maps cost, in forward passes: a backward pass costs about two."""
    per_class = 3 * (SMOOTHGRAD_SAMPLES if method == "smoothgrad" else 1)
    return per_class * classes + (2 if method == GUIDED else 0)  # Guided Grad-CAM also runs Grad-CAM


class InputGradients:
    """``∂y_c/∂x`` for rows of pixels and classes, compiled once; ``guided``: through
    guided backpropagation's ReLUs (refused, naming them, for other activations)."""

    def __init__(self, model: keras.Model, preprocess=None, guided_relus: bool = False):
        check_classifier(model)
        if guided_relus:
            guided.check(model)
        self.classes = int(model.outputs[0].shape[-1])
        logits, prepare = graph.logits_fn(model), prep.resolve(preprocess)

        def class_score(x, onehot):
            # Entered inside the compiled function, so whichever trace runs records the rule.
            with guided.guided_relus(model) if guided_relus else nullcontext():
                scores = ops.sum(logits(prepare(x)) * onehot, axis=-1)
            return ops.sum(scores), scores

        value_and_grad = grad.value_and_grad(class_score)
        self._grads = grad.compile(lambda x, onehot: value_and_grad(x, onehot)[1])

    def __call__(self, pixels: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """``(N, h, w, 3)`` float32 gradients for ``(N, h, w, 3)`` pixels and ``(N,)`` classes."""
        out = []
        for start in range(0, len(pixels), GRAD_BATCH):
            x, c = pixels[start:start + GRAD_BATCH], classes[start:start + GRAD_BATCH]
            onehot = np.zeros((GRAD_BATCH, self.classes), dtype="float32")
            onehot[np.arange(len(c)), c] = 1.0
            # Padding rows have an all-zero one-hot, so a zero score and a zero gradient.
            x = np.concatenate([x, np.zeros((GRAD_BATCH - len(x), *x.shape[1:]), dtype="float32")])
            g = self._grads(ops.convert_to_tensor(x), ops.convert_to_tensor(onehot))
            out.append(ops.convert_to_numpy(g)[:len(c)])
        return np.concatenate(out).astype("float32")


def smoothgrad_noise(pixels: np.ndarray) -> np.ndarray:
    """The ``(SMOOTHGRAD_SAMPLES, h, w, 3)`` noise added to ``(h, w, 3)`` pixels: ``N(0, σ²)``,
    ``σ = SMOOTHGRAD_NOISE · (max − min)`` of the pixels, from a fixed seed."""
    sigma = SMOOTHGRAD_NOISE * float(pixels.max() - pixels.min())
    rng = np.random.default_rng(SMOOTHGRAD_SEED)
    return rng.normal(0.0, sigma, (SMOOTHGRAD_SAMPLES, *pixels.shape)).astype("float32")


def magnitudes(found: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(n, h, w, 3)`` attributions → ``(n, height, width)`` ``max_colour |·|``, upsampled."""
    return np.stack([imaging.resize(np.abs(a).max(axis=-1), height, width) for a in found])


class PixelEngine:
    """Saliency, SmoothGrad or Guided Grad-CAM (at ``layer``) for one model; compiled passes are reused."""

    def __init__(self, model: keras.Model, layer: str | None = None, method: str = "saliency", preprocess=None,
                 fallback: int = 224):
        if method not in PIXEL_METHODS:
            raise GalleryError(f"pixel attribution method must be one of {', '.join(PIXEL_METHODS)}, got {method!r}")
        self.model, self.method, self.fallback = model, method, fallback
        self.gradients = InputGradients(model, preprocess, guided_relus=method == GUIDED)
        self.cam = CamEngine(model, layer, "gradcam", preprocess, fallback) if method == GUIDED else None
        self.layer = self.cam.layer if self.cam else None

    def raw(self, photos: Sequence[np.ndarray], classes: Sequence[Sequence[int]]) -> np.ndarray:
        """``(B, n, h, w, 3)`` float32 attributions at the model's input size: the gradient
        (saliency), the mean gradient over the noisy copies (SmoothGrad), or the guided
        gradient times the Grad-CAM map scaled to ``[0, 1]`` (Guided Grad-CAM)."""
        wanted = checked_classes(classes, len(photos), self.gradients.classes)
        pixels = input_pixels(self.model, photos, self.fallback)
        b, n = wanted.shape
        if self.method == "smoothgrad":
            found = np.stack([self._smoothed(p, row) for p, row in zip(pixels, wanted)])
        else:
            found = self.gradients(np.repeat(pixels, n, axis=0), wanted.reshape(-1)).reshape(b, n, *pixels.shape[1:])
        if self.cam is not None:
            h, w = pixels.shape[1:3]
            cams = self.cam.raw(photos, wanted)[0]  # (B, n, h', w'): ReLU(Σ_k α_k A_k)
            found = found * np.stack([unit_scaled_at(row, h, w) for row in cams])[..., None]
        return found

    def _smoothed(self, pixels: np.ndarray, classes: np.ndarray) -> np.ndarray:
        noisy = pixels[None] + smoothgrad_noise(pixels)
        return np.stack([self.gradients(noisy, np.full(len(noisy), c)).mean(axis=0) for c in classes])

    def __call__(self, photo: np.ndarray, classes: Sequence[int]) -> np.ndarray:
        """``(len(classes), H, W)`` float32 maps in ``[0, 1]`` at the photo's own size."""
        return self.explain_batch([photo], [classes])[0][0]

    def explain_batch(self, photos: Sequence[np.ndarray], classes: Sequence[Sequence[int]]):
        """``(maps, contributions)`` as :meth:`CamEngine.explain_batch` gives them: ``maps[i]``
        is ``(n, H_i, W_i)`` in ``[0, 1]``, the attribution's ``max_colour |·|`` upsampled to
        photo ``i`` and scaled by its maximum; ``contributions[i]`` is ``None``: no channel
        weighs these maps."""
        return self.maps(photos, self.raw(photos, classes)), [None] * len(photos)

    @staticmethod
    def maps(photos: Sequence[np.ndarray], found: np.ndarray) -> list[np.ndarray]:
        """:meth:`raw`'s attributions as :meth:`explain_batch`'s maps: per photo ``(n, H, W)``,
        ``max_colour |·|`` upsampled to the photo and scaled by its maximum."""
        return [unit_scaled(magnitudes(f, *p.shape[:2])) for p, f in zip(photos, found)]

    def pictures(self, found: np.ndarray, height: int, width: int, view=None) -> list[np.ndarray]:
        """One photo's ``(n, h, w, c)`` attributions from :meth:`raw` as uint8 images to show
        at ``height × width``: the magnitude in grey (saliency, SmoothGrad), or the signed
        image of Selvaraju et al. (Guided Grad-CAM), shown through ``view`` (its channels as
        RGB: :meth:`gallery.channels.Channels.view`) where the model's are not RGB."""
        if self.method == GUIDED:
            return [(view or (lambda x: x))(imaging.signed_image(imaging.resize_channels(a, height, width)))
                    for a in found]
        return [imaging.magnitude_image(m) for m in magnitudes(found, height, width)]
