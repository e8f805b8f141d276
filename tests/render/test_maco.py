"""--param maco: phases under natural images' fixed amplitude spectrum, and its transparency map
(Fel et al., "Unlocking Feature Visualization for Deeper Networks with MAgnitude Constrained
Optimization", NeurIPS 2023)."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops
from PIL import Image

from gallery import visualize_filters
from gallery.orchestrate import units
from gallery.cli import main
from gallery.config import RenderSettings
from gallery.errors import GalleryError
from gallery.render import params
from gallery.render.optimize import FilterRenderer

from ..conftest import _keras, tiny_classifier
from ..helpers.builds import check_site


def _field(p, size):
    """The MACO field before its bounding nonlinearity, for phases ``p``."""
    self_conjugate = ops.convert_to_tensor(params.hermitian_weights(size) == 1.0)
    return ops.convert_to_numpy(params.phase_field(ops.convert_to_tensor(p), ops.convert_to_tensor(
        params.natural_magnitude(size)), params.irfft2_bases(size, size), params.odd_rows(size), self_conjugate))


@pytest.mark.parametrize("size", [16, 15])  # an even side has a second self-conjugate column, Nyquist's
def test_the_image_has_exactly_the_fixed_amplitude_spectrum_whatever_its_phases(size):
    init, image_fn = params.maco(size)
    p = np.stack([init(np.random.default_rng(i)) for i in range(2)] + [init(np.random.default_rng(2)) * 40])
    field = _field(p, size)
    magnitude = params.natural_magnitude(size)
    amplitude = np.abs(np.fft.rfft2(field, axes=(2, 3), norm="ortho"))
    np.testing.assert_allclose(amplitude, np.broadcast_to(magnitude, amplitude.shape), atol=2e-5)
    # Standardised by construction (Parseval): mean 0 and variance 1 over each image.
    np.testing.assert_allclose(field.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(field.std(axis=(1, 2, 3)), 1, atol=1e-4)
    # The tile is that field, scaled to photos' contrast, recorrelated and bounded by a sigmoid.
    expected = 1 / (1 + np.exp(-params.natural_contrast(size) * np.moveaxis(field, 1, -1) @ params.COLOR_CORRELATION.T))
    np.testing.assert_allclose(ops.convert_to_numpy(image_fn(ops.convert_to_tensor(p))), expected, atol=1e-5)


def test_its_parameters_are_phases_drawn_deterministically():
    init, image_fn = params.maco(16)
    p = init(np.random.default_rng(3))
    assert p.shape == (3, 16, 9) and p.dtype == np.float32
    assert p.min() >= -np.pi and p.max() < np.pi
    np.testing.assert_array_equal(p, init(np.random.default_rng(3)))
    assert not np.array_equal(p, init(np.random.default_rng(4)))
    # A phase and the same phase a turn later are one image: the parameters are angles.
    batch = np.stack([p, p + 2 * np.pi, p + np.random.default_rng(0).integers(-3, 4, p.shape) * 2 * np.pi])
    images = ops.convert_to_numpy(image_fn(ops.convert_to_tensor(batch.astype("float32"))))
    np.testing.assert_allclose(images[1], images[0], atol=2e-4)
    np.testing.assert_allclose(images[2], images[0], atol=2e-4)


def test_uniform_phases_put_no_blob_on_the_corners_where_standardised_ones_do():
    """Why the phases are not standardised as in the reference: phases of mean 0 and deviation
    1 stay aligned enough to add up, at pixel (0, 0), to the brightest spot of every image."""
    init, _ = params.maco(32)
    ours = _field(np.stack([init(np.random.default_rng(i)) for i in range(8)]), 32)[:, 0]  # luminance
    drawn = np.random.default_rng(0).normal(size=(8, 3, 32, 17))
    standardised = (drawn - drawn.mean(axis=(1, 2, 3), keepdims=True)) / drawn.std(axis=(1, 2, 3), keepdims=True)
    theirs = _field(standardised.astype("float32"), 32)[:, 0]
    assert np.all(np.abs(ours[:, 0, 0]) < 3) and np.all(np.abs(ours).max(axis=(1, 2)) < 5)
    assert np.all(theirs[:, 0, 0] > 6) and np.all(theirs[:, 0, 0] == theirs.max(axis=(1, 2)))


def test_the_natural_magnitude_is_measured_deterministic_and_photo_like():
    size = 32
    magnitude = params.natural_magnitude(size)
    assert magnitude.shape == (3, size, size // 2 + 1) and magnitude.dtype == np.float32
    params.natural_magnitude.cache_clear()
    params._photo_crops.cache_clear()
    np.testing.assert_array_equal(params.natural_magnitude(size), magnitude)  # measured again, the same
    assert params.natural_magnitude(size) is params.natural_magnitude(size)  # and kept in memory
    assert np.all(magnitude[:, 0, 0] == 0)  # no DC: every image's mean colour is mid grey
    np.testing.assert_allclose(magnitude, magnitude[:, (-np.arange(size)) % size], rtol=1e-6)  # mirror symmetric
    # Natural images' spectra fall with frequency, about as 1/f: the lowest band holds far
    # more amplitude per bin than the highest.
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :])
    low, high = (magnitude[:, (f > lo) & (f <= hi)].mean() for lo, hi in ((0, 2 / size), (0.35, 0.5)))
    assert low > 8 * high, (low, high)


@pytest.mark.parametrize("size,spread", [(32, 0.165), (128, 0.18)])  # smaller photos, less contrast
def test_the_gain_gives_photos_contrast(size, spread):
    init, image_fn = params.maco(size)
    images = ops.convert_to_numpy(image_fn(ops.convert_to_tensor(
        np.stack([init(np.random.default_rng(10 + i)) for i in range(4)]))))
    photos = np.mean([crop.std(axis=(0, 1)).mean() for crop in params._photo_crops(size)])
    assert images.std(axis=(1, 2)).mean() == pytest.approx(photos, abs=0.01)
    assert photos == pytest.approx(spread, abs=0.01)
    # Without the gain, the reference's sigmoid of a unit-variance field is greyer than a photo.
    grey = 1 / (1 + np.exp(-np.log(images / (1 - images)) / params.natural_contrast(size)))
    assert grey.std(axis=(1, 2)).mean() < photos - 0.03


def test_the_settings_know_every_parameterization_and_maco_stays_in_range():
    from gallery import config

    assert config.PARAMETERIZATIONS == tuple(params.PARAMETERIZATIONS)
    init, image_fn = params.maco(12)
    images = ops.convert_to_numpy(image_fn(ops.convert_to_tensor(
        np.stack([init(np.random.default_rng(i)) * 100 for i in range(3)]))))
    assert images.shape == (3, 12, 12, 3) and images.min() > 0.0 and images.max() < 1.0


def test_settings_accept_maco_and_name_a_bad_parameterization():
    with pytest.raises(GalleryError, match="parameterization must be one of 'fourier', 'pixel', 'maco', got 'phase'"):
        RenderSettings(parameterization="phase")
    # The spectrum's slope is Fourier's alone: it neither reaches a MACO image nor its key.
    assert "decay" not in RenderSettings(parameterization="maco", decay=1.5).key()
    assert RenderSettings(parameterization="fourier", decay=1.5).key()["decay"] == 1.5


def test_cache_keys_keep_maco_and_fourier_tiles_apart():
    def job(param):
        return units.Job("fp", RenderSettings(size=16, steps=4, parameterization=param), "none", {"conv2": (0, 1)})

    maco, fourier = job("maco"), job("fourier")
    assert units.filter_key(maco, "conv2", 0, units.MAIN, 0) != units.filter_key(fourier, "conv2", 0, units.MAIN, 0)
    kinds = [[e.about["kind"] for e in unit.entries] for unit in units.filter_units(maco)]
    assert kinds == [["filter", "filter", "transparency", "transparency"]]
    assert all(e.about["kind"] == "filter" for unit in units.filter_units(fourier) for e in unit.entries)
    # Only the main image gets one: a first layer linear in the pixels too (optimized on its
    # rectified map), but no variant, and no neuron image (solved in closed form, no path).
    extra = units.Job("fp", maco.render, "none", {"conv1": (0,), "conv2": (0,)}, variants=("negative", "neuron"),
                      exact=("conv1",))
    assert [(u.variant, u.layer, [e.about["kind"] for e in u.entries]) for u in units.filter_units(extra)] == [
        ("channel", "conv1", ["filter", "transparency"]), ("channel", "conv2", ["filter", "transparency"]),
        ("negative", "conv1", ["filter"]), ("negative", "conv2", ["filter"]),
        ("neuron", "conv1", ["filter"]), ("neuron", "conv2", ["filter"])]


@pytest.mark.slow
def test_the_objective_rises_over_steps():
    model = tiny_classifier()
    reached = [FilterRenderer(model, "conv2", RenderSettings(size=16, steps=steps, parameterization="maco"))
               .render([0, 1, 2, 3, 4])[1] for steps in (1, 30)]
    assert np.all(reached[1] > reached[0] + 0.05), reached


def _half_blind():
    """conv(relu) → keep the left 8 columns → conv: the right of a 16-px image, past the first
    conv's one-pixel reach, cannot change the second conv's map."""
    keras = _keras()
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Cropping2D(((0, 0), (0, 8)))(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(x)
    return keras.Model(inputs, x)


@pytest.mark.slow
def test_the_transparency_map_is_where_the_gradient_is():
    settings = RenderSettings(size=16, steps=8, parameterization="maco", transforms="none", batch=4)
    renderer = FilterRenderer(_half_blind(), "c2", settings)
    images, maps = renderer.images_and_transparency([0, 1, 2, 3])
    assert images.shape == (4, 16, 16, 3) and maps.shape == (4, 16, 16) and maps.dtype == np.float32
    assert maps.min() >= 0
    assert np.all(maps[:, :, 9:] == 0)  # no gradient ever reached these pixels
    seen = maps[:, :, :8].reshape(4, -1)
    assert np.all((seen > 0).mean(axis=1) > 0.5), (seen > 0).mean(axis=1)
    # Gathered over the steps: the first 4 of 8 steps add up to less, pixel by pixel.
    short = FilterRenderer(_half_blind(), "c2", RenderSettings(**{**settings.__dict__, "steps": 4}))
    _, early = short.images_and_transparency([0, 1, 2, 3])
    assert np.all(maps >= early - 1e-5) and maps.sum() > early.sum() * 1.5
    # Gathering the map changes no step of the optimization.
    renderer.transparent = False
    plain, none = renderer.images_and_transparency([0, 1, 2, 3])
    assert none is None and np.abs(plain.astype(int) - images.astype(int)).max() <= 1


@pytest.mark.slow
def test_only_maco_gathers_a_map_and_the_api_returns_it():
    model = tiny_classifier()
    fourier = FilterRenderer(model, "conv2", RenderSettings(size=16, steps=2))
    assert not fourier.transparent and fourier.images_and_transparency([0])[1] is None
    images, maps = visualize_filters(model, "conv2", [0, 3], size=16, steps=4, param="maco", transparency=True)
    assert images.shape == (2, 16, 16, 3) and maps.shape == (2, 16, 16) and maps.max() > 0
    np.testing.assert_array_equal(visualize_filters(model, "conv2", [0, 3], size=16, steps=4, param="maco"), images)
    assert not np.array_equal(visualize_filters(model, "conv2", [0, 3], size=16, steps=4), images)
    with pytest.raises(GalleryError, match="transparency=True needs param='maco'.*got param='fourier'"):
        visualize_filters(model, "conv2", [0], size=16, steps=1, transparency=True)
    with pytest.raises(GalleryError, match="got 'phases'"):
        visualize_filters(model, "conv2", [0], size=16, steps=1, param="phases")


def _run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.slow
def test_the_flag_end_to_end(tmp_path, classifier_file, photo_dir, capsys):
    code, err = _run(["--model", classifier_file, "--param", "maco", "--size", "16", "--steps", "4",
                      "--images", photo_dir, "--out", tmp_path / "site", "--cache", tmp_path / "cache"], capsys)
    assert code == 0, err
    check_site(tmp_path / "site")
    # conv1 is linear in the pixels, but optimized (on its rectified map) like conv2: both have maps.
    for layer, index in [(tmp_path / "site" / "tiny" / "layers" / name, i) for name in ("conv1", "conv2")
                         for i in range(5)]:
        tile = np.asarray(Image.open(layer / f"{index}.png").convert("RGB"))
        with Image.open(layer / f"{index}.transparency.png") as found:
            assert found.mode == "RGBA"
            rgba = np.asarray(found)
        np.testing.assert_array_equal(rgba[..., :3], tile)  # the tile itself, with the map for alpha
        assert rgba[..., 3].max() == 255 and rgba[..., 3].min() < 255
        page = (layer / f"{index}.html").read_text()
        assert f'src="../../../tiny/layers/{layer.name}/{index}.transparency.png"' in page and "Where it looked" in page
    # Fourier tiles live beside MACO's in the cache: the same command with fourier reuses the
    # photos' unit and renders both layers' filter units anew.
    code, err = _run(["--model", classifier_file, "--size", "16", "--steps", "4", "--images", photo_dir,
                      "--out", tmp_path / "fourier", "--cache", tmp_path / "cache"], capsys)
    assert code == 0 and "3 units: 1 settled from the cache, 2 to run" in err, err
    assert not list((tmp_path / "fourier").rglob("*.transparency.png"))


def test_a_bad_param_is_one_line(tmp_path, capsys):
    code, err = _run(["--param", "phase", "--out", tmp_path / "o", "--cache", tmp_path / "c"], capsys)
    assert code == 2 and "--param: invalid choice: 'phase' (choose from" in err and "Traceback" not in err


def test_the_natural_spectrum_has_no_cross_from_the_crops_edges(monkeypatch):
    """Measured under a Hann window: unwindowed, each crop's edge-to-edge jump adds power
    along both frequency axes (1.7x the lines beside them at 64 px), and every MACO image
    shows a grid of horizontal and vertical lines. Photos' own axis power is 1.24x."""
    def axis_excess(m):
        axes = np.concatenate([m[:, 0, 4:], m[:, 4:m.shape[1] // 2, 0]], axis=1).mean()
        beside = np.concatenate([m[:, 2, 4:], m[:, 4:m.shape[1] // 2, 2]], axis=1).mean()
        return axes / beside

    measure = getattr(params.natural_magnitude, "__wrapped__", params.natural_magnitude)
    assert axis_excess(measure(64)) < 1.45
    monkeypatch.setattr(params.np, "hanning", np.ones)  # the mutation: no window
    assert axis_excess(measure(64)) > 1.45
