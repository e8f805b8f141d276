"""What issue 19 asks of a first layer's tiles, measured from their saved 8-bit pixels.

Used by the first-layer tests and by ``bench/first_layers.py``, beside
:mod:`tests.tile_scores` (whose :class:`~tests.tile_scores.Scorer` gives the peaks):

- *faithful*: a live filter's tile reaches a higher peak (its strongest unit, after the
  ReLU) than the strongest sample photo at the model's input size;
- *distinct*: two filters whose kernels differ (cosine similarity of the flattened kernels
  below :data:`SAME_KERNEL`) do not get near-identical tiles: the mean absolute difference
  of their pixels, at the best relative shift of up to :data:`MAX_SHIFT` pixels each way
  (a grating or an edge is the same picture wherever it starts), is at least
  :data:`NEAR_IDENTICAL` grey levels;
- *picture limits*: clip, corner and checker, from :mod:`tests.picture_scores`.
"""

from __future__ import annotations

import itertools

import numpy as np

from . import picture_scores
from .picture_scores import checker, clip, corner  # noqa: F401  (the picture limits, re-exported)

SAME_KERNEL = 0.9  # kernels at least this similar (cosine) may share a picture
# Grey levels (of 255). Two flat fills of one corner colour differ by 0; 8-bit rounding
# and the robustness transforms' jitter leave two renderings of one pattern a few levels
# apart; two different patterns (another orientation, period or colour) differ by tens.
NEAR_IDENTICAL = 4.0
MAX_SHIFT = 16  # pixels each way: more than a period of any first-layer grating at 128 px


def live(peaks_of_tiles: np.ndarray, photo_peaks: np.ndarray) -> np.ndarray:
    """Filters not dead: some image, the tile or a photo, makes them fire."""
    return (peaks_of_tiles > 0) | (photo_peaks.max(axis=0) > 0)


def faithful(tile_peaks: np.ndarray, photo_peaks: np.ndarray) -> np.ndarray:
    """Per filter, whether its tile's peak beats every photo's; ``photo_peaks`` is ``(photos, filters)``."""
    return tile_peaks > photo_peaks.max(axis=0)


def kernel_cosines(kernel: np.ndarray) -> np.ndarray:
    """``(filters, filters)`` cosine similarities of the flattened kernels ``(kh, kw, c_in, filters)``."""
    flat = kernel.reshape(-1, kernel.shape[-1]).T.astype("float64")
    unit = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def aligned_difference(a: np.ndarray, b: np.ndarray, max_shift: int = MAX_SHIFT) -> float:
    """The smallest mean absolute difference (grey levels) of two tiles over relative
    shifts of up to ``max_shift`` pixels each way, on the part they then share."""
    a, b = a.astype("float32"), b.astype("float32")
    h, w = a.shape[:2]
    best = np.inf
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            pa = a[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
            pb = b[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
            best = min(best, float(np.abs(pa - pb).mean()))
    return best


def near_identical_pairs(tiles: np.ndarray, kernel: np.ndarray, indices, live_filters=None,
                         threshold: float = NEAR_IDENTICAL) -> list[tuple[int, int, float, float]]:
    """``[(i, j, difference, cosine)]``: filters whose kernels differ but whose tiles do not.
    ``live_filters`` (per tile) leaves out dead ones, which have no picture to tell apart."""
    cosines = kernel_cosines(kernel)
    keep = np.ones(len(tiles), bool) if live_filters is None else np.asarray(live_filters)
    found = []
    for (p, i), (q, j) in itertools.combinations(enumerate(indices), 2):
        if not (keep[p] and keep[q]) or cosines[i, j] >= SAME_KERNEL:
            continue
        # A cheap bound first: tiles whose mean colours differ by more cannot be near.
        if np.abs(tiles[p].mean(axis=(0, 1)) - tiles[q].mean(axis=(0, 1))).mean() > 4 * threshold:
            continue
        difference = aligned_difference(tiles[p], tiles[q])
        if difference < threshold:
            found.append((i, j, difference, float(cosines[i, j])))
    return found


def photos_at(folder, side: int) -> np.ndarray:
    """The sample photos, RGB, square-cropped and resized to ``side`` × ``side`` (the model's input size)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return picture_scores.photos_at(files, side)
