"""Class activation maps over one shared pipeline; each method is one weighting function.

The pipeline (after pytorch-grad-cam's design): run the photos to the chosen conv layer
``A`` (``(h, w, k)``), hand the evidence about ``A`` to the method's function, which turns
it into channel weights ``α_k`` for each requested class, and return
``ReLU(Σ_k α_k A_k)``, upsampled to the photo and scaled to ``[0, 1]``.

The evidence is computed only when a method asks for it: the gradient of the pre-softmax
class scores (one backward pass shared by all classes and a batch of photos), or the
class probabilities of the photo masked by each channel (Score-CAM's batched forwards).
"""

from __future__ import annotations

from functools import cached_property
from typing import Sequence

import keras
import numpy as np
from keras import ops

from ..errors import GalleryError
from ..imaging import resize
from ..model import grad, graph
from .activations import ROWS, model_inputs

MASK_BATCH = 32  # masked photos per forward pass in Score-CAM


def cam_weights(ev: "Evidence"):
    """CAM (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR
    2016): ``α_k = W_kc``, the dense weight from channel ``k``'s global average to class
    ``c``'s score, so ``M_c = Σ_k W_kc A_k`` exactly. Only for a GAP → dense head."""
    kernel = ops.convert_to_tensor(ev.engine.cam_kernel)  # (k, classes)
    picked = ops.take(kernel, ops.convert_to_tensor(ev.classes.reshape(-1)), axis=1)  # (k, B·n)
    return ops.reshape(ops.transpose(picked), (*ev.classes.shape, -1))


def gradcam_weights(ev: "Evidence"):
    """Grad-CAM (Selvaraju et al., ICCV 2017): ``α_k = mean_ij ∂y_c/∂A_ij^k``."""
    return ops.mean(ev.grads, axis=(2, 3))


def gradcam_pp_weights(ev: "Evidence"):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018), with the exponential-score identity:

    ``α_ij^k = g² / (2 g² + Σ_ab A_ab^k g³)`` and ``w_k = Σ_ij α_ij^k · ReLU(g_ij^k)``.
    """
    g = ev.grads
    g2, g3 = g * g, g * g * g
    denominator = 2.0 * g2 + ops.sum(ev.a, axis=(1, 2), keepdims=True)[:, None] * g3
    alpha = g2 / ops.where(ops.abs(denominator) > 1e-12, denominator, 1e-12)
    return ops.sum(alpha * ops.relu(g), axis=(2, 3))


def layercam_weights(ev: "Evidence"):
    """LayerCAM (Jiang et al., IEEE TIP 2021): ``α_ij^k = ReLU(∂y_c/∂A_ij^k)``, a weight per
    unit rather than per channel, so fine layers keep their spatial detail:
    ``M_c = ReLU(Σ_k α_ij^k A_ij^k)``."""
    return ops.relu(ev.grads)  # (B, n, h, w, k)


def scorecam_weights(ev: "Evidence"):
    """Score-CAM (Wang et al., CVPR-W 2020): ``α_k = p_c(X ∘ H_k) − p_c(X_b)``.

    ``H_k`` is channel ``k`` upsampled to the input and min-max scaled to ``[0, 1]``;
    ``p_c`` is the softmax probability of class ``c``; ``X_b`` is the all-zero input.
    No gradient is involved, so the map cannot suffer from saturated or noisy gradients.
    """
    return ev.masked_scores


METHODS = {"cam": cam_weights, "gradcam": gradcam_weights, "gradcam++": gradcam_pp_weights,
           "scorecam": scorecam_weights, "layercam": layercam_weights}


def default_layer(model: keras.Model) -> str:
    """The last conv layer before the head, nested backbones included.

    When that conv is followed directly by its normalisation and activation (as in
    EfficientNet's ``top_conv → top_bn → top_activation``), the map is taken after them:
    those are part of the same unit, and the rectified output is what the head pools.
    """
    names = graph.conv_layers(model)
    if not names:
        raise GalleryError(f"model {graph.shown_name(model)!r} has no conv layers")
    return graph.follow_pointwise(model, names[-1])


def checked_classes(classes: Sequence[Sequence[int]], photos: int, count: int) -> np.ndarray:
    """``(photos, n)`` int64 class indices, each photo asking for ``n`` classes below ``count``."""
    wanted = np.asarray([list(c) for c in classes], dtype="int64")
    if wanted.ndim != 2 or len(wanted) != photos:
        raise GalleryError("give each photo the same number of classes to explain")
    bad = wanted[(wanted < 0) | (wanted >= count)]
    if bad.size:
        raise GalleryError(f"class index {int(bad[0])} is outside 0..{count - 1}")
    return wanted


def check_classifier(model: keras.Model) -> None:
    if not graph.has_classifier(model):
        raise GalleryError(f"model {graph.shown_name(model)!r} has no classifier head, so there are no classes to explain")


class Evidence:
    """What a weighting function may look at, for ``B`` photos and ``n`` classes each.

    ``a``: the layer's output ``(B, h, w, k)``; ``grads``: ``∂y_c/∂A`` as
    ``(B, n, h, w, k)``; ``masked_scores``: Score-CAM's ``(B, n, k)``. Each is computed
    on first use, so a method pays only for what it reads.
    """

    def __init__(self, engine: "CamEngine", x, a, classes: np.ndarray, real: int | None = None):
        """``real``: the photos that are not padding (the first ones); the rest get no Score-CAM pass."""
        self.engine, self.x, self.a, self.classes = engine, x, a, classes
        self.real = len(classes) if real is None else real

    @cached_property
    def grads(self):
        b, n = self.classes.shape
        repeated = ops.repeat(self.a, n, axis=0)
        onehot = ops.convert_to_tensor(np.eye(self.engine.classes, dtype="float32")[self.classes.reshape(-1)])
        g = self.engine._grads(repeated, onehot)
        return ops.reshape(g, (b, n, *g.shape[1:]))

    @cached_property
    def masked_scores(self):
        engine, k = self.engine, int(self.a.shape[-1])
        baseline = engine._probabilities(ops.zeros_like(self.x[:1]))[0]
        rows = []
        for i in range(self.real):
            probs = []
            for start in range(0, k, MASK_BATCH):
                # Fixed-size chunks (zero-padded at the end) keep one compiled signature.
                chunk = self.a[i:i + 1, :, :, start:start + MASK_BATCH]
                pad = MASK_BATCH - int(chunk.shape[-1])
                if pad:
                    chunk = ops.pad(chunk, [(0, 0), (0, 0), (0, 0), (0, pad)])
                probs.append(engine._masked(self.x[i:i + 1], chunk)[:MASK_BATCH - pad])
            p = ops.concatenate(probs, axis=0) - baseline  # (k, classes)
            rows.append(ops.transpose(ops.take(p, ops.convert_to_tensor(self.classes[i]), axis=1)))
        rows += [ops.zeros_like(rows[0])] * (len(self.classes) - self.real)
        return ops.stack(rows)


class CamEngine:
    """CAM-family maps for one model, layer and method; compiled passes are reused."""

    def __init__(self, model: keras.Model, layer: str | None = None, method: str = "gradcam",
                 preprocess=None, fallback: int = 224):
        if method not in METHODS:
            raise GalleryError(f"CAM method must be one of {', '.join(METHODS)}, got {method!r}")
        check_classifier(model)
        self.model, self.method, self.weigh = model, method, METHODS[method]
        self.path = graph.locate(model, layer or default_layer(model))
        self.layer = self.path.name
        self.cam_kernel = graph.gap_dense_kernel(model, self.layer) if method == "cam" else None
        self.preprocess = preprocess
        self.fallback = fallback
        self.classes = int(model.outputs[0].shape[-1])
        to_input = graph.input_fn(model, self.path)
        conv = self.path.layer
        head = graph.head_fn(model, self.path)
        self._features = grad.no_grad(lambda x: conv(to_input(x)))

        def class_score(a, onehot):
            scores = ops.sum(head(a) * onehot, axis=-1)
            return ops.sum(scores), scores

        value_and_grad = grad.value_and_grad(class_score)
        self._grads = grad.compile(lambda a, onehot: value_and_grad(a, onehot)[1])
        self._probabilities = grad.no_grad(grad.compile(lambda x: ops.softmax(head(conv(to_input(x))), axis=-1)))

        def masked(x, channels):
            """Softmax scores of ``x`` masked by each of ``channels`` (``(1, h, w, m)``)."""
            up = ops.image.resize(channels, x.shape[1:3], interpolation="bilinear")[0]
            low = ops.min(up, axis=(0, 1), keepdims=True)
            span = ops.max(up, axis=(0, 1), keepdims=True) - low
            masks = ops.where(span > 0, (up - low) / ops.where(span > 0, span, 1.0), 0.0)
            batch = x * ops.transpose(masks, (2, 0, 1))[..., None]
            return ops.softmax(head(conv(to_input(batch))), axis=-1)

        self._masked = grad.no_grad(grad.compile(masked))

    def __call__(self, photo: np.ndarray, classes: Sequence[int]) -> np.ndarray:
        """``(len(classes), H, W)`` float32 maps in ``[0, 1]`` at the photo's own size."""
        return self.explain(photo, classes)[0]

    def explain(self, photo: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(maps, contributions)`` for one photo; see :meth:`explain_batch`."""
        maps, contributions = self.explain_batch([photo], [classes])
        return maps[0], contributions[0]

    def raw(self, photos: Sequence[np.ndarray], classes: Sequence[Sequence[int]]):
        """``(maps, weights, activations)`` at the layer, before any upsampling or scaling.

        ``maps``: ``(B, n, h, w)``, ``ReLU(Σ_k α_k A_k)`` for each photo and class;
        ``weights``: ``(B, n, k)``, the method's ``α_k`` (``(B, n, h, w, k)`` for a method that
        weighs each unit, LayerCAM); ``activations``: ``A``, ``(B, h, w, k)``.
        The photos go through the model in batches of exactly :data:`ROWS` (see
        :mod:`gallery.photos.activations`); every photo must ask for the same number of classes.
        """
        wanted = checked_classes(classes, len(photos), self.classes)
        x = ops.convert_to_numpy(model_inputs(self.model, photos, self.preprocess, self.fallback))
        parts = [self._raw(x[s:s + ROWS], wanted[s:s + ROWS]) for s in range(0, len(photos), ROWS)]
        return tuple(np.concatenate(found) for found in zip(*parts))

    def _raw(self, x: np.ndarray, wanted: np.ndarray):
        """:meth:`raw` for at most :data:`ROWS` photos, padded to exactly that many with
        zero photos: every step, eager ones included, sees one shape whatever the batch."""
        real, pad = len(x), ROWS - len(x)
        x = ops.convert_to_tensor(np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]))
        wanted = np.concatenate([wanted, np.zeros((pad, wanted.shape[1]), wanted.dtype)])
        a = self._features(x)
        weights = self.weigh(Evidence(self, x, a, wanted, real))  # (B, n, k), or (B, n, h, w, k) per unit
        spread = weights if len(weights.shape) == 5 else weights[:, :, None, None, :]
        maps = ops.relu(ops.sum(spread * a[:, None], axis=-1))
        return tuple(ops.convert_to_numpy(t)[:real].astype("float32") for t in (maps, weights, a))

    def explain_batch(self, photos: Sequence[np.ndarray], classes: Sequence[Sequence[int]]):
        """For each photo, ``(maps, contributions)`` lists over the photos.

        ``maps[i]``: ``(n, H_i, W_i)`` float32 in ``[0, 1]``: :meth:`raw`'s maps upsampled to
        photo ``i``'s size and scaled by their maximum. ``contributions[i]``: ``(n, k)``, each
        channel's share of the map before the ReLU, ``mean_ij α_ij^k A_ij^k`` (``α_k ·
        mean_ij A_ij^k`` where the weight is one per channel).
        """
        maps, weights, a = self.raw(photos, classes)
        if weights.ndim == 5:
            contributions = (weights * a[:, None]).mean(axis=(2, 3))
        else:
            contributions = weights * a.mean(axis=(1, 2))[:, None, :]
        return [unit_scaled_at(m, *photo.shape[:2]) for photo, m in zip(photos, maps)], list(contributions)


def unit_scaled(maps: np.ndarray) -> np.ndarray:
    """Non-negative ``(n, H, W)`` maps divided by their own maxima, as float32 (zero stays zero)."""
    top = maps.max(axis=(1, 2), keepdims=True)
    return np.where(top > 0, maps / np.where(top > 0, top, 1), 0).astype("float32")


def unit_scaled_at(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(n, h, w)`` maps upsampled to ``height × width``, then :func:`unit_scaled`."""
    return unit_scaled(np.stack([resize(m, height, width) for m in maps]))
