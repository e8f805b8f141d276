"""How faithful a class activation map is: what the pixels it ranks highest keep of the
class probability, against what the pixels it ranks lowest keep.

For a photo ``x``, a class ``c`` and a map ``M`` (any method's: only the ranking of its
pixels matters), three probabilities: ``p_c(x)``, ``p_c(x_top)`` and ``p_c(x_bottom)``,
where ``x_top`` keeps only the :data:`KEEP` (30%) of the pixels ``M`` ranks highest and
``x_bottom`` the 30% it ranks lowest. A faithful map keeps much of ``p_c(x)`` in the first
and little in the second. This is one point of each of the deletion and insertion curves
of RISE (Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box
Models", BMVC 2018), with a binary mask, and the share ``p_c(x_top) / p_c(x)`` is what the
"Average Drop" and "Increase in Confidence" of Grad-CAM++ (Chattopadhay et al., WACV 2018)
average over photos (they weigh the photo by the map instead of cutting it).

What a removed pixel becomes: the ImageNet mean colour (:data:`FILL`), set in RGB pixels
before the model's own preprocessing. That is RISE's deletion substrate (zero in the
mean-subtracted input), and the same colour whatever the preprocessing (caffe and torch
map it to zero exactly, tf to near-grey, a self-rescaling model gets the colour itself).
Not a blur: a blurred photo keeps the removed object's colours and coarse shape, so a
model still sees it there and the bottom figure rises for every map alike. The constant
still leaks the mask's outline (Rong et al., "A Consistent and Efficient Evaluation
Strategy for Attribution Methods", ICML 2022, whose ROAD imputes instead), the same for
every method on a photo, so the figures compare methods, not absolute truths.

Pixels are ranked at the model's input size (the map resized there as the photo is), so
the kept share is exact in what the model sees: ``round(KEEP · h · w)`` pixels. Ties are
broken by reading order (row by row, left to right; the earlier pixel is kept), with a
stable sort, so equal maps keep the same pixels every time.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from ..attribution import KEEP
from ..errors import GalleryError
from ..imaging import resize
from ..model import grad, preprocess as prep
from .activations import as_probabilities, in_fixed_batches, input_pixels

FILL = (123.68, 116.779, 103.939)  # ImageNet's mean RGB: what a removed pixel becomes
# Masked photos made at a time; they go through the model in passes of exactly
# activations.ROWS (the last padded), so a figure does not depend on its pass's neighbours.
BATCH = 32
FULL, TOP, BOTTOM = range(3)  # the columns of what :class:`Faithfulness` returns


def kept_count(pixels: int, fraction: float = KEEP) -> int:
    """How many of ``pixels`` a masked photo keeps: the nearest whole number, at least one."""
    return max(1, int(fraction * pixels + 0.5))


def keep_masks(heat: np.ndarray, fraction: float = KEEP) -> tuple[np.ndarray, np.ndarray]:
    """``(top, bottom)`` boolean masks the shape of ``heat``: exactly :func:`kept_count`
    pixels each, those ``heat`` ranks highest and lowest, ties kept in reading order."""
    flat = np.asarray(heat, dtype="float64").ravel()
    n = kept_count(flat.size, fraction)
    top, bottom = np.zeros(flat.size, bool), np.zeros(flat.size, bool)
    top[np.argsort(-flat, kind="stable")[:n]] = True
    bottom[np.argsort(flat, kind="stable")[:n]] = True
    return top.reshape(heat.shape), bottom.reshape(heat.shape)


class Faithfulness:
    """``p_c`` of photos whole, and with only their maps' top or bottom pixels kept."""

    def __init__(self, model: keras.Model, preprocess=None, fallback: int = 224, fraction: float = KEEP,
                 fill=FILL):
        if not 0 < fraction < 1:
            raise GalleryError(f"the share of pixels kept must lie between 0 and 1, got {fraction!r}")
        self.model, self.fallback, self.fraction = model, fallback, fraction
        self.classes = int(model.outputs[0].shape[-1])
        scale = prep.resolve(preprocess)
        # What a removed pixel becomes: ImageNet's mean colour, per channel (gallery.channels.Channels.fill).
        fill = ops.convert_to_tensor(np.asarray(fill, "float32"))

        def outputs(pixels, keep):
            return model(scale(ops.where(keep[..., None], pixels, fill)), training=False)

        self._outputs = grad.no_grad(grad.compile(outputs))

    def __call__(self, photos: Sequence[np.ndarray], classes: Sequence[Sequence[int]],
                 maps: Sequence[np.ndarray]) -> list[np.ndarray]:
        """For each photo, ``(n, 3)`` float64: ``p_c`` whole, top kept, bottom kept
        (columns :data:`FULL`, :data:`TOP`, :data:`BOTTOM`), one row per class.

        ``photos``: uint8 RGB of any sizes; ``classes[i]``: photo ``i``'s classes;
        ``maps[i]``: ``(n, H, W)``, one map per class, at any size. Every photo, whole and
        masked, for every class goes through the model in passes of exactly
        :data:`~gallery.photos.activations.ROWS` rows, so a figure is the same whatever
        photos share the call.
        """
        if not len(photos) == len(classes) == len(maps):
            raise GalleryError(f"give one list of classes and one of maps per photo, got {len(photos)} photos, "
                               f"{len(classes)} class lists and {len(maps)} map stacks")
        pixels = input_pixels(self.model, photos, self.fallback)
        h, w = pixels.shape[1:3]
        rows = []  # (photo, mask): the photo whole, then each class's top and bottom
        for i, (wanted, heats) in enumerate(zip(classes, maps)):
            if len(wanted) != len(heats):
                raise GalleryError(f"photo {i} has {len(wanted)} classes but {len(heats)} maps")
            bad = [c for c in wanted if not 0 <= c < self.classes]
            if bad:
                raise GalleryError(f"class index {bad[0]} is outside 0..{self.classes - 1}")
            rows.append((i, np.ones((h, w), bool)))
            for heat in heats:
                rows += [(i, mask) for mask in keep_masks(resize(np.asarray(heat, "float32"), h, w), self.fraction)]
        outputs = np.concatenate([self._run(pixels, rows[s:s + BATCH]) for s in range(0, len(rows), BATCH)])
        probs = np.clip(as_probabilities(outputs), 0.0, 1.0)  # a float32 softmax may pass 1 by an ulp
        out, r = [], 0
        for i, wanted in enumerate(classes):
            whole = probs[r]
            picked = probs[r + 1:r + 1 + 2 * len(wanted)].reshape(len(wanted), 2, -1)
            out.append(np.asarray([[whole[c], both[0, c], both[1, c]] for c, both in zip(wanted, picked)],
                                  "float64").reshape(len(wanted), 3))
            r += 1 + 2 * len(wanted)
        return out

    def _run(self, pixels: np.ndarray, rows: list) -> np.ndarray:
        chosen = pixels[[i for i, _ in rows]]
        return in_fixed_batches(self._outputs, chosen, np.stack([m for _, m in rows]))
