import numpy as np
import pytest
from keras import ops

from gallery.render import params


@pytest.mark.parametrize("h,w", [(8, 8), (7, 10), (16, 9)])
def test_irfft2_matches_numpy(h, w):
    rng = np.random.default_rng(0)
    re = rng.normal(size=(2, 3, h, w // 2 + 1)).astype("float32")
    im = rng.normal(size=(2, 3, h, w // 2 + 1)).astype("float32")
    ours = ops.convert_to_numpy(params.irfft2(ops.convert_to_tensor(re), ops.convert_to_tensor(im),
                                              params.irfft2_bases(h, w)))
    expected = np.fft.irfft2(re + 1j * im, s=(h, w), norm="ortho")
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_spectrum_scale_is_inverse_frequency():
    scale = params.spectrum_scale(8, 8)
    assert scale.shape == (8, 5)
    assert scale[0, 0] == pytest.approx(8.0)  # DC clamps at 1 / max(h, w)
    assert scale[0, 1] == pytest.approx(8.0)  # f = 1/8
    assert scale[0, 4] == pytest.approx(2.0)  # f = 1/2
    assert scale[4, 4] == pytest.approx(1 / np.sqrt(0.5))


def test_spectrum_decay_is_the_slope_and_reaches_the_image():
    steep = params.spectrum_scale(8, 8, decay=1.5)
    assert steep[0, 4] == pytest.approx(2.0 ** 1.5) and steep[0, 1] == pytest.approx(8.0 ** 1.5)
    # The renderer's parameterization carries the slope: the same parameters give another image.
    p = ops.convert_to_tensor(np.random.default_rng(0).normal(size=(1, 2, 3, 8, 5)).astype("float32"))
    pink, steeper = (ops.convert_to_numpy(params.parameterize("fourier", 8, d)[1](p)) for d in (1.0, 1.5))
    expected = ops.convert_to_numpy(params.fourier(8, decay=1.5)[1](p))
    np.testing.assert_allclose(steeper, expected, atol=1e-6)
    assert np.abs(pink - steeper).max() > 0.01


def test_render_settings_name_a_bad_step_or_slope():
    from gallery.config import RenderSettings
    from gallery.errors import GalleryError

    for bad in ({"learning_rate": -0.1}, {"decay": float("nan")}, {"learning_rate": "fast"}):
        with pytest.raises(GalleryError, match=repr(next(iter(bad.values())))):
            RenderSettings(**bad)
    assert RenderSettings(decay=1.5).key()["decay"] == 1.5 and "decay" not in RenderSettings(decay=1.0).key()


@pytest.mark.parametrize("name", ["fourier", "pixel"])
def test_parameterizations_give_bounded_images(name):
    init, image_fn = params.PARAMETERIZATIONS[name](12)
    batch = np.stack([init(np.random.default_rng(i)) * 100 for i in range(3)])
    images = ops.convert_to_numpy(image_fn(ops.convert_to_tensor(batch)))
    assert images.shape == (3, 12, 12, 3)
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_init_depends_only_on_its_generator():
    init, _ = params.fourier(10)
    np.testing.assert_array_equal(init(np.random.default_rng(5)), init(np.random.default_rng(5)))


def test_within_contrast_projects_onto_the_ball_and_leaves_its_inside_alone():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 6, 3)).astype("float32") * np.array([0.5, 2.0, 4.0], "float32")[:, None, None, None]
    out = ops.convert_to_numpy(params.within_contrast(ops.convert_to_tensor(x), 1.5))
    rms = np.sqrt((x ** 2).mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(out[0], x[0], rtol=1e-6)  # inside the ball: untouched
    for i in (1, 2):  # outside: the same image scaled onto the sphere
        np.testing.assert_allclose(out[i], x[i] * 1.5 / rms[i], rtol=1e-5)
        assert np.sqrt((out[i] ** 2).mean()) == pytest.approx(1.5, rel=1e-5)


def test_the_contrast_bound_sits_in_the_decorrelated_basis():
    """``to_rgb`` bounds the colour coordinates, then decorrelates: sigmoid(C · x · min(1, c/rms))."""
    x = np.random.default_rng(2).normal(size=(2, 5, 5, 3)).astype("float32") * 3
    ours = ops.convert_to_numpy(params.to_rgb(ops.convert_to_tensor(x), True, 2.0))
    rms = np.sqrt((x ** 2).mean(axis=(1, 2, 3), keepdims=True))
    expected = 1 / (1 + np.exp(-(x * np.minimum(1, 2.0 / rms)) @ params.COLOR_CORRELATION.T))
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_a_bounded_fourier_image_cannot_blow_out_however_far_its_parameters_go():
    """Unbounded, parameters 1000× their start saturate most channels; bounded at 2.5, the
    colour coordinates' RMS is 2.5, so RGB logits stay near it and few values reach the ends."""
    init, unbounded = params.fourier(32, decay=1.5)
    _, bounded = params.fourier(32, decay=1.5, contrast=2.5)
    p = ops.convert_to_tensor(np.stack([init(np.random.default_rng(i)) * 1000 for i in range(4)]))
    clipped = lambda fn: float(np.mean(np.abs(ops.convert_to_numpy(fn(p)) - 0.5) > 0.488))  # noqa: E731
    assert clipped(unbounded) > 0.5
    assert clipped(bounded) < 0.05


def test_render_settings_key_names_the_contrast_bound_and_refuses_a_bad_one():
    from gallery.config import RenderSettings
    from gallery.errors import GalleryError

    assert RenderSettings(contrast=2.5).key()["contrast"] == 2.5 and "contrast" not in RenderSettings(contrast=None).key()
    for bad in (0, -1.0, float("inf"), "high", True):
        with pytest.raises(GalleryError, match="contrast"):
            RenderSettings(contrast=bad)


def test_default_tiles_are_bounded_so_the_posterized_tiles_are_not_reused():
    """The bound is in every filter tile's cache key: a cache of the old, unbounded default's
    tiles (Adam 0.2, 1/f^1.5, 64 steps) is rendered again, not mixed in."""
    from gallery.config import RenderSettings

    new, old = RenderSettings(), RenderSettings(contrast=None)
    assert new.contrast is not None and new.key()["contrast"] == new.contrast
    assert new.key() != old.key() and {k: v for k, v in new.key().items() if k != "contrast"} == old.key()
