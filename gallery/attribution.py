"""The numbers that define the photo analyses and that their pages state, Keras-free, so
the site names them without importing the analyses (:mod:`gallery.photos.saliency`,
:mod:`gallery.photos.faithfulness`, :mod:`gallery.photos.sanity`) that compute with them.
"""

import numpy as np

from .errors import GalleryError

# Smilkov et al. (§3.2, Fig. 3) see the maps sharpen as samples grow and settle by about 50,
# the count their figures and code use; fewer leave visible noise, more change little.
SMOOTHGRAD_SAMPLES = 50
SMOOTHGRAD_NOISE = 0.15  # σ as a fraction of the photo's pixel range; the paper's best lie in 10–20%

KEEP = 0.3  # the share of the pixels each masked photo keeps; changing it means bumping PHOTO_SCHEMA

POINTS = 10  # curve steps by default: a point every 10% of the pixels, so the 30% and 70% points are on it


def fractions(points: int = POINTS) -> np.ndarray:
    """The shares of pixels at which the curves are measured: ``0, 1/points, …, 1``, with
    :data:`KEEP` and ``1 − KEEP`` added when the grid misses them, so the 30% figures are
    always points of the curves."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise GalleryError(f"curve points must be a whole number of at least 2, got {points!r}")
    grid = {round(k / points, 9) for k in range(points + 1)} | {round(KEEP, 9), round(1 - KEEP, 9)}
    return np.asarray(sorted(grid), "float64")


def area(x: np.ndarray, y: np.ndarray) -> float:
    """The area under ``y(x)`` by the trapezoid rule (RISE's AUC, with ``x`` in ``[0, 1]``)."""
    x, y = np.asarray(x, "float64"), np.asarray(y, "float64")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


# Halfway between a map unchanged (1) and one unrelated to the trained map (0): at or above
# it in both figures, after the top layers lost all they learned, the map is more like what
# it was than not. Both, because each alone misleads on smooth maps: a class activation map
# whose blob moved from a whole face to its nose keeps the background last, so a rank
# correlation of 0.6, while SSIM sees the new shape (0.16; bench/sanity.py, MobileNetV2's
# cat). A judgement, not a law: Adebayo et al. read the whole curve by eye, and the
# absolute-valued maps every method here yields keep some of the photo's edges even under a
# random model (their §4), so a method near the line is reported with its figures.
FAIL_AT = 0.5


def fails(figures: dict) -> bool:
    """Whether a map failed: at the deepest level its rank correlation and SSIM with the
    trained map are both still at least :data:`FAIL_AT`."""
    return bool(figures["spearman"]) and min(figures["spearman"][-1], figures["ssim"][-1]) >= FAIL_AT
