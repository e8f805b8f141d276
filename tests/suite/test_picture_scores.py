"""The picture scorer against images whose answers are known in closed form."""

import numpy as np
import pytest

from ..picture_scores import checker, clip, corner, figures


def _grid(size=64):
    return np.add.outer(np.arange(size), np.arange(size))


def test_a_two_pixel_checkerboard_is_all_checker():
    board = np.where(_grid() % 2 == 0, 200, 50).astype("uint8")
    images = np.repeat(board[None, :, :, None], 3, axis=-1)
    assert checker(images)[0] == pytest.approx(1.0)
    assert clip(images)[0] == 0 and corner(images)[0] == 0


def test_a_flat_grey_scores_nothing():
    grey = np.full((2, 32, 32, 3), 128, "uint8")
    result = figures(grey)
    assert all(float(value.max()) == 0.0 for value in result.values())


def test_clip_counts_channel_values_at_the_ends_and_corner_whole_pixels():
    image = np.full((1, 10, 10, 3), 128, "uint8")
    image[0, 0, :, 0] = 255  # 10 values clipped, no whole pixel
    image[0, 1, :5] = 0  # 5 pixels black: 15 values, 5 corner pixels
    image[0, 2, :5] = [255, 0, 255]  # 5 magenta pixels
    image[0, 3, :5] = [252, 3, 251]  # 251 is not clipped: 10 values, no corner
    assert clip(image)[0] == pytest.approx((10 + 15 + 15 + 10) / 300)
    assert corner(image)[0] == pytest.approx(10 / 100)


def test_white_noise_spreads_its_power_by_area():
    rng = np.random.default_rng(0)
    noise = rng.integers(20, 236, size=(4, 128, 128, 3)).astype("uint8")
    # |f| ≥ 0.375 on one axis of 128 bins: 33 bins (48..64 and -64..-48); both axes: (33/128)².
    assert checker(noise).mean() == pytest.approx((33 / 128) ** 2, rel=0.05)
    assert figures(noise)["HF"].mean() == pytest.approx(0.80, abs=0.03)
    assert clip(noise).max() == 0


def test_a_smooth_gradient_has_no_checker():
    ramp = np.linspace(0, 255, 64).astype("uint8")
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[None, :] // 2), axis=-1)[None]
    assert checker(image)[0] < 1e-3
