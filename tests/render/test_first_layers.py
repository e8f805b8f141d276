"""First layers, linear in the pixels: optimized on a rectified objective, since their plain
mean sees only each kernel's sums; their neuron images are still solved exactly."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from gallery.orchestrate import units
from gallery.orchestrate.cache import make_key
from gallery.config import BuildConfig, RenderSettings
from gallery.model import graph
from gallery.render import exact
from gallery.render.optimize import FilterRenderer, visualize_filters

from .. import first_layer_scores as fl
from ..conftest import SHARED_MODELS, SHARED_SAMPLES, needs_shared, tiny_classifier, tiny_transfer
from ..tile_scores import Scorer


def strided_stem(padding: str = "same", pre_pad: bool = False):
    """Rescaling to [-1, 1], then a stride-2 conv, as EfficientNet's stem; filter 3 is dead."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    if pre_pad:
        x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
    x = keras.layers.Conv2D(5, 3, strides=2, padding=padding, use_bias=False, name="stem")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(2, 3, name="next")(x)
    model = keras.Model(inputs, x)
    kernel = model.get_layer("stem").kernel.numpy()
    kernel[..., 3] *= 1e-9  # pruned, as four of EfficientNet-lite0's stem filters are
    model.get_layer("stem").kernel.assign(kernel)
    return model


def edge_layer():
    """A first layer of known filters: a vertical edge, a horizontal edge (both grey, their
    weights summing to 0), a red filter, and a red–green opponent (summing to 0)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(2, 3, padding="same", name="c2")(x)
    model = keras.Model(inputs, x)
    kernel = np.zeros((3, 3, 3, 4), "float32")
    kernel[:, 0, :, 0], kernel[:, 2, :, 0] = -1, 1  # brighter to the right
    kernel[0, :, :, 1], kernel[2, :, :, 1] = -1, 1  # brighter below
    kernel[:, :, 0, 2] = 1  # red
    kernel[0, 0, 0, 3], kernel[2, 2, 1, 3] = 1, -1  # red, not green
    kernel[0, 0, 1, 3], kernel[2, 2, 0, 3] = -1, 1
    model.get_layer("c1").kernel.assign(kernel / 255.0)
    model.get_layer("c1").bias.assign(np.zeros(4, "float32"))
    return model


def render(model, layer, filters, size=16, preprocess=None, variant="channel", **settings):
    renderer = FilterRenderer(model, layer, RenderSettings(size=size, **settings), preprocess, variant)
    return renderer, *renderer.render(filters)


def gradients(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the mean absolute change of its grey level across columns and across rows."""
    grey = images.astype("float64").mean(axis=-1)
    return np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2)), np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2))


def test_a_first_layer_is_optimized_and_shows_each_filters_edge_or_colour():
    """The plain mean of these filters is the same for every flat image (edges) or best at
    one flat colour: it cannot tell the edges apart. The rectified objective shows each
    edge in its own orientation, and fills only the colour filter."""
    model = edge_layer()
    renderer, images, _ = render(model, "c1", range(4), size=32, steps=48)
    assert renderer.linear and not renderer.exact
    across, down = gradients(images)
    assert images[:2].std(axis=(1, 2, 3)).min() > 30  # not flat: the old exact tiles of 0 and 1 were grey
    assert across[0] > 1.5 * down[0] and down[1] > 1.5 * across[1]  # vertical edges, horizontal edges
    assert images[2, ..., 0].mean() > 200  # the red filter, red
    _, peaks = renderer.scores(images, range(4))
    # Away from the padding a flat image leaves filters 0, 1 and 3 at 0; their tiles reach
    # 90% of the most any image can: each weight's pixel at its best bound, 9 of the 18
    # weights of 1/255 at 255 for the edges, 2 of 4 for the opponent.
    assert (peaks[[0, 1, 3]] >= 0.9 * np.array([9, 9, 2])).all(), peaks


def test_a_filter_below_zero_on_the_starting_noise_still_shows_its_edge():
    """Its ReLU passes no gradient at the start: the image raises its strongest unit until
    one fires, then the rectified objective takes over."""
    model = edge_layer()
    # Near grey, z ≈ −6 inside and −1.5 against the zero padding.
    model.get_layer("c1").bias.assign(np.array([-6, 0, 0, 0], "float32"))
    renderer, images, _ = render(model, "c1", [0], size=32, steps=48)
    assert renderer.scores(np.full((1, 32, 32, 3), 128, "uint8"), [0])[1][0] == 0  # grey does not fire
    across, down = gradients(images)
    assert images.std() > 30 and across[0] > 1.2 * down[0]
    assert renderer.scores(images, [0])[1][0] > 0.9 * (9 - 6)


def test_negative_images_of_a_first_layer_are_optimized_too():
    model = edge_layer()
    renderer, images, _ = render(model, "c1", range(4), size=32, steps=48, variant="negative")
    assert renderer.linear and not renderer.exact
    across, down = gradients(images)
    assert across[0] > 1.5 * down[0] and down[1] > 1.5 * across[1]  # an edge of the other polarity
    assert images[:2].std(axis=(1, 2, 3)).min() > 30


def test_diverse_images_of_a_first_layer_part_on_the_rectified_objective():
    renderer, images, _ = render(edge_layer(), "c1", [0], size=32, steps=24, variant="diversity")
    assert renderer.linear and not renderer.exact and images.shape == (4, 32, 32, 3)
    assert min(np.abs(a.astype(int) - b).mean() for i, a in enumerate(images) for b in images[i + 1:]) > 10


def test_neuron_images_are_still_exact():
    model = tiny_classifier()
    kernel = model.get_layer("conv1").kernel.numpy()
    renderer, neuron, _ = render(model, "conv1", range(6), variant="neuron")
    assert renderer.exact
    expected = np.full(neuron.shape, exact.GREY, "uint8")  # pixels the centre unit does not see
    expected[:, 7:10, 7:10] = np.where(np.moveaxis(kernel, -1, 0) > 0, 255, 0)  # its 3×3 window at (8, 8)
    np.testing.assert_array_equal(neuron, expected)
    _, stem, _ = render(strided_stem(), "stem", [3], variant="neuron")
    assert (stem == exact.GREY).all()  # a pruned filter: every image is optimal, so grey


def test_only_layers_linear_in_the_pixels_and_named_preprocessing_are_solved():
    classifier = tiny_classifier()
    assert graph.linear_in_pixels(classifier, "conv1") and not graph.linear_in_pixels(classifier, "conv2")
    assert graph.linear_in_pixels(tiny_transfer(), "inner/c1")  # through Rescaling into a nested backbone
    assert graph.linear_in_pixels(strided_stem("valid", True), "stem")  # through zero padding
    inputs = keras.Input((None, None, 3))
    squashed = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="c")(keras.layers.Activation("tanh")(inputs)))
    assert not graph.linear_in_pixels(squashed, "c")
    assert not FilterRenderer(squashed, "c", RenderSettings(size=16)).exact
    assert not FilterRenderer(classifier, "conv1", RenderSettings(size=16), lambda x: x).exact  # a callable
    assert not FilterRenderer(classifier, "conv1", RenderSettings(size=16), None, "diversity").exact


def test_first_layer_tiles_are_keyed_apart_from_the_old_flat_fills_and_cost_their_steps():
    render = RenderSettings(size=16, steps=8)
    before = units.Job("f" * 32, render, "none", {"conv1": (0,), "conv2": (0,)})
    after = units.Job("f" * 32, render, "none", {"conv1": (0,), "conv2": (0,)}, exact=("conv1",))
    changed = {(layer, variant) for layer in ("conv1", "conv2") for variant in ("channel", "negative", "neuron",
                                                                                 "diversity")
               if units.filter_key(before, layer, 0, variant, 0) != units.filter_key(after, layer, 0, variant, 0)}
    assert changed == {("conv1", v) for v in ("channel", "negative", "neuron", "diversity")}

    def flat_fill_key(variant):  # how a cache before this change (and before the contrast bound) keyed them
        old = {k: v for k, v in render.key().items() if k != "contrast"}
        return make_key(kind="filter", model=after.fingerprint, layer="conv1", filter=0, variant=variant, copy=0,
                        preprocess="none", **old, exact=1)

    assert all(units.filter_key(after, "conv1", 0, v, 0) != flat_fill_key(v) for v in ("channel", "negative"))
    assert units.filter_key(after, "conv1", 0, "neuron", 0) == flat_fill_key("neuron")  # still solved, as before
    neuron = units.Job("f" * 32, render, "none", {"conv1": (0,)}, variants=("neuron",), exact=("conv1",))
    main, extra = units.filter_units(neuron)
    assert [n for *_, n in main.stages(neuron, _Flat())[0]] == [8]
    assert [n for *_, n in extra.stages(neuron, _Flat())[0]] == [1]


class _Flat:
    """Costs of one FLOP per image-step, whatever the layer."""

    def step_flops(self, layer, side):
        return 1.0


@needs_shared()
@pytest.mark.shared
@pytest.mark.parametrize("name,layer,preprocess", [("vgg16_hed_notop.keras", "block1_conv1", "caffe"),
                                                  ("efficientnet_lite0_imagenet.keras", "stem_conv", "none"),
                                                  ("mobilenet_v2_imagenet.keras", "Conv1", "none")])
@pytest.mark.slow
def test_real_first_layers_beat_every_photo_and_give_different_kernels_different_tiles(name, layer, preprocess):
    """Issue 19's acceptance, on 16 filters with the default preset (``bench/first_layers.py``
    prints the picture figures too)."""
    model = keras.saving.load_model(SHARED_MODELS / name)
    filters = list(range(16))
    tiles = visualize_filters(model, layer, filters, preprocess=preprocess)
    scorer = Scorer(model, layer, caffe=preprocess == "caffe")
    tile_peaks = np.maximum(scorer.peak(tiles, filters), 0)
    photo_peaks = np.maximum(np.stack([scorer.peak(np.repeat(p[None], len(filters), 0), filters)
                                       for p in fl.photos_at(SHARED_SAMPLES, 224)]), 0)
    pruned = exact.silent(model.get_layer(layer), filters)
    alive = fl.live(tile_peaks, photo_peaks) & ~pruned
    good = fl.faithful(tile_peaks, photo_peaks)
    assert good[alive].mean() >= 0.95, [(f, tile_peaks[i], photo_peaks[:, i].max())
                                         for i, f in enumerate(filters) if alive[i] and not good[i]]
    kernel = model.get_layer(layer).kernel.numpy()
    assert fl.near_identical_pairs(tiles, kernel, filters, alive) == []


@pytest.mark.slow
def test_a_build_optimizes_its_first_layer_and_says_so(tmp_path, photo_dir):
    from PIL import Image

    from gallery.orchestrate import pipeline

    path = tmp_path / "tiny.keras"
    tiny_classifier().save(path)
    config = BuildConfig(model=str(path), preprocess="none", render=RenderSettings(size=16, steps=8, batch=4),
                         images=(photo_dir,), out=tmp_path / "site", cache=tmp_path / "cache")
    manifest = pipeline.build(config)
    assert [layer["linear"] for layer in manifest["layers"]] == [True, False]
    tiles = np.stack([np.asarray(Image.open(config.out / "tiny" / "layers" / "conv1" / f"{i}.png").convert("RGB"))
                      for i in range(6)])
    assert (tiles.std(axis=(1, 2)) > 0).any(axis=-1).all()  # none is a flat fill
    site = config.out / "tiny" / "layers"
    assert "optimized on the mean square of the map after a ReLU" in (site / "conv1" / "0.html").read_text()
    assert "after a ReLU" not in (site / "conv2" / "0.html").read_text()
    assert "not optimized" not in (site / "conv1" / "0.html").read_text()
