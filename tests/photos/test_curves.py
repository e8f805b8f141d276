"""Deletion and insertion curves (RISE): against the probabilities of masked photos done by
hand, and through today's 30% figures."""

from __future__ import annotations

import numpy as np
import pytest

from gallery.errors import GalleryError
from gallery.photos import faithfulness as fm
from gallery.attribution import area, fractions
from gallery.photos.faithfulness import BOTTOM, FILL, TOP, Curves, Faithfulness, random_map

from .test_faithfulness import SIDE, _linear_classifier, _softmax_by_hand


def _by_hand(model, photo, heat, c, x):
    """Each curve point from its definition: sort the pixels (ties: the earlier pixel
    first among the highest for insertion, kept among the lowest for deletion), keep
    ``round(f·n)`` of them, fill the rest, and take the softmax in float64."""
    flat, n = heat.ravel(), heat.size
    best_first = sorted(range(n), key=lambda i: (-flat[i], i))
    lowest_first = sorted(range(n), key=lambda i: (flat[i], i))
    insertion, deletion = [], []
    for f in x:
        for order, share, out in ((best_first, f, insertion), (lowest_first, 1 - f, deletion)):
            keep = np.zeros(n, bool)
            keep[order[:int(round(share, 9) * n + 0.5)]] = True
            masked = np.where(keep.reshape(heat.shape)[..., None], photo, np.asarray(FILL))
            out.append(_softmax_by_hand(model, masked)[c])
    return deletion, insertion


def test_every_point_is_the_probability_of_its_masked_photo():
    model = _linear_classifier()
    rng = np.random.default_rng(5)
    photos = [rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8) for _ in range(3)]
    classes = [[0, 3], [5, 1], [2, 4]]
    maps = [rng.random((2, SIDE, SIDE)).astype("float32") for _ in photos]
    maps[1][0] = np.round(maps[1][0] * 2) / 2  # ties: three values over 16 pixels
    judge = Curves(model, "tf", points=10)
    x = judge.x
    assert len(x) == 11 and np.allclose(x, np.arange(11) / 10)
    found = judge(photos, classes, maps)
    for photo, wanted, heats, curves in zip(photos, classes, maps, found):
        for row, (c, heat) in enumerate(zip(wanted, heats)):
            deletion, insertion = _by_hand(model, photo, heat, c, x)
            np.testing.assert_allclose(curves["deletion"][row], deletion, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(curves["insertion"][row], insertion, rtol=1e-5, atol=1e-7)


def test_the_random_order_ranks_squares_from_a_seed():
    model = _linear_classifier()
    photo = np.random.default_rng(6).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    (found,) = Curves(model, "tf", points=4)([photo], [[1, 2]])
    heat = random_map(SIDE, SIDE)
    np.testing.assert_array_equal(heat, random_map(SIDE, SIDE))
    for row, c in enumerate((1, 2)):
        deletion, insertion = _by_hand(model, photo, heat, c, fractions(4))
        np.testing.assert_allclose(found["deletion"][row], deletion, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(found["insertion"][row], insertion, rtol=1e-5, atol=1e-7)
    big = random_map(56, 42, grid=14)  # squares of 4×3 pixels, each one value
    assert len(np.unique(big)) == 14 * 14
    assert (big[:4, :3] == big[0, 0]).all() and big[4, 0] != big[0, 0]


def test_the_curves_pass_through_todays_30_percent_figures():
    model = _linear_classifier()
    rng = np.random.default_rng(7)
    photos = [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(2)]
    heats = [rng.random((3, 12, 16)).astype("float32"), np.zeros((3, 12, 16), "float32")]
    heats[1][0, 5:7] = 1.0  # ties in reading order
    heats[1][1] = 0.5  # a flat map: no ranking at all
    classes = [[0, 1, 2], [3, 4, 5]]
    today = Faithfulness(model, "tf")(photos, classes, heats)
    for points in (10, 4, 7):  # on the grid, and added to grids that miss 30% and 70%
        judge = Curves(model, "tf", points=points)
        top, bottom = list(judge.x).index(fm.KEEP), list(judge.x).index(round(1 - fm.KEEP, 9))
        # Equal to float32's last bits, not bit for bit: the curves batch more images than
        # the figures do, and on an AMD EPYC (AVX2) oneDNN picks its GEMM by the row count,
        # which moved one value by one ulp (0.18854040 against 0.18854037).
        for figures, curves in zip(today, judge(photos, classes, heats)):
            np.testing.assert_allclose(curves["insertion"][:, top], figures[:, TOP], rtol=1e-6, atol=0)
            np.testing.assert_allclose(curves["deletion"][:, bottom], figures[:, BOTTOM], rtol=1e-6, atol=0)


def test_a_photo_has_the_same_curves_whatever_shares_its_passes():
    model = _linear_classifier()
    rng = np.random.default_rng(8)
    photos = [rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8) for _ in range(3)]
    maps = [rng.random((1, SIDE, SIDE)).astype("float32") for _ in photos]
    judge = Curves(model, "tf")
    together = judge(photos, [[1]] * 3, maps)
    alone = judge(photos[2:], [[1]], maps[2:])
    for kind in ("deletion", "insertion"):
        np.testing.assert_array_equal(together[2][kind], alone[0][kind])


def test_areas_grids_and_refusals():
    x = fractions(10)
    assert area(x, x) == pytest.approx(0.5) and area(x, np.ones_like(x)) == pytest.approx(1.0)
    assert list(fractions(4)) == [0, 0.25, 0.3, 0.5, 0.7, 0.75, 1]
    with pytest.raises(GalleryError, match="at least 2, got 1"):
        fractions(1)
    model = _linear_classifier()
    with pytest.raises(GalleryError, match="photo 0 has 2 classes but 1 maps"):
        Curves(model, "tf")([np.zeros((SIDE, SIDE, 3), np.uint8)], [[0, 1]], [np.zeros((1, SIDE, SIDE))])
