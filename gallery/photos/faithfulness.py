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

from ..attribution import KEEP, POINTS, fractions
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


# Deletion and insertion curves ------------------------------------------------------------

RANDOM_GRID = 14  # cells per side of the random-order baseline's map (VGG16's 224 px in 16 px squares)
RANDOM_SEED = 0


def orders(heat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(insert, delete)``: each pixel's place (``(h, w)`` ints) in the order the insertion
    curve adds pixels (highest first) and the order the deletion curve *keeps* them (lowest
    first), both with ties in reading order, the earlier pixel kept: exactly
    :func:`keep_masks`' rule, so the curves pass through its figures."""
    flat = np.asarray(heat, dtype="float64").ravel()
    place = np.empty((2, flat.size), "int64")
    place[0, np.argsort(-flat, kind="stable")] = np.arange(flat.size)
    place[1, np.argsort(flat, kind="stable")] = np.arange(flat.size)
    return place[0].reshape(heat.shape), place[1].reshape(heat.shape)


def random_map(height: int, width: int, grid: int = RANDOM_GRID, seed: int = RANDOM_SEED) -> np.ndarray:
    """A map that ranks squares of the photo in a random order: uniform noise on a
    ``grid × grid`` lattice (fewer cells where the input is smaller), repeated over each
    cell's pixels. Squares rather than single pixels: a curve over a random scatter of
    pixels measures how the model takes salt-and-pepper noise (it collapses long before
    the object is gone), not what a region holds, and would flatter every map's deletion."""
    rows, cols = min(grid, height), min(grid, width)
    cells = np.random.default_rng(seed).random((rows, cols))
    return cells[np.arange(height) * rows // height][:, np.arange(width) * cols // width]


class Curves:
    """Deletion and insertion curves (Petsiuk et al., "RISE", BMVC 2018) of maps, at :func:`fractions`.

    Insertion at share ``f``: ``p_c`` of the photo with only the ``round(f·h·w)`` pixels the
    map ranks highest, the rest :data:`FILL`; deletion at ``f``: the ``round(f·h·w)`` it ranks
    highest removed, i.e. only the ``round((1−f)·h·w)`` lowest kept. A faithful map makes the
    insertion curve rise early (a large area) and the deletion curve fall early (a small one).
    The points at ``f = KEEP`` of insertion and ``1 − KEEP`` of deletion are
    :class:`Faithfulness`' top and bottom figures, pixel for pixel. Every masked copy goes
    through the model in passes of :data:`BATCH` rows (in fixed sub-batches, see
    :func:`~gallery.photos.activations.in_fixed_batches`), so a point does not depend on
    what shares its pass. The ends are the same for every map of a photo (the photo whole,
    all fill) and are computed once per photo.
    """

    def __init__(self, model: keras.Model, preprocess=None, fallback: int = 224, points: int = POINTS,
                 fill=FILL):
        self.x = fractions(points)
        self.model, self.fallback = model, fallback
        self.classes = int(model.outputs[0].shape[-1])
        self._judge = Faithfulness(model, preprocess, fallback, fill=fill)

    def __call__(self, photos: Sequence[np.ndarray], classes: Sequence[Sequence[int]],
                 maps: Sequence[np.ndarray] | None = None) -> list[dict]:
        """For each photo ``{"deletion", "insertion"}``: ``(n, len(x))`` float64 curves, one
        row per class; ``maps[i]`` is ``(n, H, W)`` at any size; ``None`` for the
        random-order baseline (:func:`random_map`), whose masked copies are the same for
        every class of a photo, so they go through the model once for all of them."""
        if maps is not None and not len(photos) == len(classes) == len(maps):
            raise GalleryError(f"give one list of classes and one of maps per photo, got {len(photos)} photos, "
                               f"{len(classes)} class lists and {len(maps)} map stacks")
        pixels = input_pixels(self.model, photos, self.fallback)
        h, w = pixels.shape[1:3]
        counts = [int(f * h * w + 0.5) for f in self.x]
        inner = range(1, len(counts) - 1)  # the ends (none kept, all kept) are shared by every map
        rows, read = [], []  # masked copies; per photo, (first row of its ends, [(first row of a map, class)])
        for i, wanted in enumerate(classes):
            bad = [c for c in wanted if not 0 <= c < self.classes]
            if bad:
                raise GalleryError(f"class index {bad[0]} is outside 0..{self.classes - 1}")
            heats = [random_map(h, w)] if maps is None else maps[i]
            if maps is not None and len(wanted) != len(heats):
                raise GalleryError(f"photo {i} has {len(wanted)} classes but {len(heats)} maps")
            ends, starts = len(rows), []
            rows += [(i, np.zeros((h, w), bool)), (i, np.ones((h, w), bool))]
            for heat in heats:
                starts.append(len(rows))
                # Deletion keeps the lowest pixels; the grid is symmetric (fractions), so its count
                # at share f is insertion's at 1 - f, and 70% removed keeps kept_count(0.3) exactly.
                insert, delete = orders(resize(np.asarray(heat, "float32"), h, w))
                rows += [(i, insert < counts[k]) for k in inner]
                rows += [(i, delete < counts[-1 - k]) for k in inner]
            read.append((ends, [(starts[0 if maps is None else j], c) for j, c in enumerate(wanted)]))
        run = self._judge._run
        outputs = np.concatenate([run(pixels, rows[s:s + BATCH]) for s in range(0, len(rows), BATCH)])
        probs = np.clip(as_probabilities(outputs), 0.0, 1.0)
        m, out = len(counts) - 2, []
        for ends, maps_at in read:
            blank, whole = probs[ends], probs[ends + 1]
            deletion = [[whole[c], *probs[r + m:r + 2 * m, c], blank[c]] for r, c in maps_at]
            insertion = [[blank[c], *probs[r:r + m, c], whole[c]] for r, c in maps_at]
            out.append({"deletion": np.asarray(deletion, "float64").reshape(len(maps_at), -1),
                        "insertion": np.asarray(insertion, "float64").reshape(len(maps_at), -1)})
        return out
