"""Caricatures: what a layer sees in a photo (OpenAI Microscope; Olah et al., "Feature
Visualization", Distill 2017, and Lucid's caricature recipe, ``lucid/recipes/caricature.py``).

A caricature is an image optimized so that a layer's response to it matches the layer's
response to a photo. Matching is not copying: the image only has to raise the same
channels at the same places, and it does so with whatever the layer finds most telling,
exaggerated, which is why Microscope calls it a caricature. It is rendered by the
gallery's own optimizer (:class:`~gallery.render.optimize.FilterRenderer`): the same
parameterization, contrast ball, robustness transforms, schedule and Adam steps as the
filter tiles, only the objective differs.

As in Lucid, the photo goes through each step's transforms beside its caricature (the
same jitter, scale, rotation and canvas), so the two are compared at the same place on
every step.
"""

from __future__ import annotations

import zlib

import numpy as np
from keras import ops

from .. import imaging
from ..model import grad
from ..photos.activations import ROWS
from . import transforms
from .optimize import FilterRenderer

# Lucid's floor on the cosine before its power: below it the exponent would only shrink
# the dot product's gradient (and a negative cosine has no real fractional power).
COSINE_FLOOR = 0.1
# The cosine's exponent p. At 0 the objective is the plain dot product, which a caricature
# can raise by growing the layer's response anywhere the photo's is positive, without
# matching its pattern; p = 1 weighs the dot product by how well the directions agree.
COSINE_POWER = 1.0


def _flat(x):
    return ops.reshape(x, (ops.shape(x)[0], -1))


def cosine(a, b):
    """Each row's cosine similarity ``a·b / (|a| |b|)`` over all its other axes, ``(batch,)``."""
    a, b = _flat(a), _flat(b)
    return ops.sum(a * b, axis=1) / (ops.norm(a, axis=1) * ops.norm(b, axis=1) + 1e-12)


def dot_compare(a, b, power: float = COSINE_POWER):
    """Lucid's ``dot_compare`` objective, per row: ``(a·b) · max(cos(a, b), 0.1)^p``.

    ``a`` is the layer's response to the caricature, ``b`` its response to the photo (held
    constant). Lucid's recipe divides the dot product by ``|b|`` alone and calls that the
    cosine; here it is the cosine itself, as Microscope describes the objective, so the
    exponent weighs only the agreement of directions, not the photo's overall strength.
    """
    dot = ops.sum(_flat(a) * _flat(b), axis=1)
    return dot * ops.maximum(cosine(a, b), COSINE_FLOOR) ** power


def caricature_rng(seed: int, layer: str, digest: str) -> np.random.Generator:
    """A generator that depends on the seed, the layer and the photo's content, nothing else."""
    return np.random.default_rng([seed, zlib.crc32(layer.encode("utf-8")), int(digest[:16], 16)])


class CaricatureRenderer(FilterRenderer):
    """Caricatures of photos at one conv layer: the layer's output, its activation applied
    (the response the photo page's feature maps show), matched with :func:`dot_compare`."""

    def __init__(self, model, layer: str, settings, preprocess=None, power: float = COSINE_POWER):
        super().__init__(model, layer, settings, preprocess)
        self.power = power
        self.transparent = False  # a caricature is the photo's, not a filter's: no map of where one looked
        self.exact = False  # no closed form: the target is a photo's response, not one unit
        self._response = grad.no_grad(self._response_of)

    def _layer_response(self, x, matrices=None, canvas=None, to_input=None):
        padding = self.padding if canvas is None else self._padding_at(canvas)
        x = transforms.step_transform(padding, matrices, canvas)(x)
        features = ops.cast((to_input or self.to_input)(self.preprocess(x * 255.0)), "float32")
        return ops.cast(self.conv(features), "float32")

    def _objective(self, x, photos, matrices, canvas):
        n = x.shape[0]
        both = ops.concatenate([x, ops.cast(photos, x.dtype)], axis=0)
        mats = None if matrices is None else ops.concatenate([matrices, matrices], axis=0)
        response = self._layer_response(both, mats, canvas, self._loop_input)
        return dot_compare(response[:n], ops.stop_gradient(response[n:]), self.power)

    def _response_of(self, images):
        return self._layer_response(images)

    def photos_at_size(self, photos) -> np.ndarray:
        """uint8 photos of any size as the optimization sees them: float ``[0, 1]`` squares
        of the tile's side, squeezed as the model's input squeezes them for feature maps."""
        side = self.settings.size
        return np.stack([imaging.resize(p, side, side) for p in photos]).astype("float32") / 255.0

    def caricatures(self, photos, digests, on_step=None) -> tuple[np.ndarray, np.ndarray]:
        """``(uint8 caricatures (n, size, size, 3), cosine similarities (n,))``: one per
        photo, seeded by its content (``digests``); the cosine is between the layer's
        responses to the saved 8-bit caricature and to its photo, both untransformed."""
        n = len(photos)
        # Always a whole number of ROWS photos, the rest grey: oneDNN picks its kernels (and
        # so the order of its sums) by the batch's shape, so a caricature drawn with fewer
        # neighbours, in a resumed build, would otherwise come out with other last bits.
        pad = -n % ROWS
        targets = self.photos_at_size(photos)
        targets = np.concatenate([targets, np.full((pad, *targets.shape[1:]), 0.5, "float32")])
        rngs = [caricature_rng(self.settings.seed, self.layer_name, d) for d in [*digests, *["0" * 16] * pad]]
        images, _ = self._optimize(rngs, ops.convert_to_tensor(targets), on_step)
        return images[:n], self.similarity(images, targets)[:n]

    def similarity(self, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The cosine similarity of the layer's responses to 8-bit ``images`` and to float
        ``[0, 1]`` ``targets`` of the same side, row by row, without transforms."""
        a = self._response(ops.convert_to_tensor(images.astype("float32") / 255.0))
        b = self._response(ops.convert_to_tensor(np.asarray(targets, "float32")))
        return ops.convert_to_numpy(cosine(a, b)).astype("float32")
