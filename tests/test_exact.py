"""First layers, linear in the pixels, get their exact optimum: checked against closed forms."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from gallery.build import units
from gallery.config import BuildConfig, RenderSettings
from gallery.model import graph
from gallery.render import exact
from gallery.render.optimize import FilterRenderer

from .conftest import SHARED_MODELS, needs_shared, tiny_classifier, tiny_transfer
from .tile_scores import Scorer, high_frequency

CORNERS = np.array(list(itertools.product((0, 255), repeat=3)), dtype="uint8")  # the colour cube's corners


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


def fill(kernel: np.ndarray, flip: bool = False) -> np.ndarray:
    """``(filters, 3)``: the closed-form optimum, each channel on where its kernel sums above 0."""
    sums = kernel.sum(axis=(0, 1))  # (c_in, filters)
    if flip:  # caffe: the model's channel k is the photo's channel 2 − k
        sums = sums[::-1]
    return np.where(sums > 0, 255, 0).T.astype("uint8")


def render(model, layer, filters, size=16, preprocess=None, variant="channel", **settings):
    renderer = FilterRenderer(model, layer, RenderSettings(size=size, **settings), preprocess, variant)
    return renderer, *renderer.render(filters)


def optimized(monkeypatch, *args, **kwargs):
    """The same filters by the optimizer, as every layer was rendered before."""
    with monkeypatch.context() as patch:
        patch.setattr(exact, "applies", lambda *a: False)
        renderer, images, activations = render(*args, **kwargs)
    assert not renderer.exact
    return images, activations


@pytest.mark.parametrize("preprocess", ["none", "caffe"])
def test_a_first_layer_tile_is_the_closed_form_fill_edge_to_edge(preprocess):
    model = tiny_classifier()
    renderer, images, _ = render(model, "conv1", range(6), preprocess=preprocess)
    assert renderer.exact
    expected = fill(model.get_layer("conv1").kernel.numpy(), flip=preprocess == "caffe")
    # Every pixel, border rows and columns included: no frame.
    np.testing.assert_array_equal(images, np.broadcast_to(expected[:, None, None], images.shape))
    assert high_frequency(images).max() == 0.0


@pytest.mark.parametrize("size", [16, 17])
@pytest.mark.parametrize("padding,pre_pad", [("same", False), ("valid", True)])
def test_a_strided_stem_gets_the_fill_of_its_whole_kernel_and_a_dead_filter_grey(size, padding, pre_pad):
    model = strided_stem(padding, pre_pad)
    _, images, _ = render(model, "stem", range(5), size=size)
    expected = fill(model.get_layer("stem").kernel.numpy())
    expected[3] = exact.GREY
    np.testing.assert_array_equal(images, np.broadcast_to(expected[:, None, None], images.shape))


def test_negative_and_neuron_images_are_exact_too():
    model = tiny_classifier()
    kernel = model.get_layer("conv1").kernel.numpy()
    _, negative, _ = render(model, "conv1", range(6), variant="negative")
    np.testing.assert_array_equal(negative, 255 - np.broadcast_to(fill(kernel)[:, None, None], negative.shape))
    _, neuron, _ = render(model, "conv1", range(6), variant="neuron")
    expected = np.full(neuron.shape, exact.GREY, "uint8")  # pixels the centre unit does not see
    expected[:, 7:10, 7:10] = np.where(np.moveaxis(kernel, -1, 0) > 0, 255, 0)  # its 3×3 window at (8, 8)
    np.testing.assert_array_equal(neuron, expected)


@pytest.mark.parametrize("model,layer", [(tiny_classifier, "conv1"), (strided_stem, "stem")])
def test_the_tile_is_the_best_image_per_unit_area_and_beats_the_optimizer(model, layer, monkeypatch):
    """Per unit area of an image that repeats the tile, the response depends on its mean colour
    alone, so the best of the colour cube's eight corners is the true optimum: the tile reaches it
    exactly, and the optimizer's tiles and random images do not exceed it."""
    model = model()
    filters = [0, 1, 2, 4]
    scorer = Scorer(model, layer, caffe=False)
    _, images, _ = render(model, layer, filters, size=24)
    old, _ = optimized(monkeypatch, model, layer, filters, size=24, steps=24)
    best = np.max([scorer.per_unit_area(np.broadcast_to(c, (len(filters), 6, 6, 3)), filters) for c in CORNERS],
                  axis=0)
    new = scorer.per_unit_area(images, filters)
    np.testing.assert_allclose(new, best, rtol=1e-5, atol=1e-5)
    assert (new >= scorer.per_unit_area(old, filters) - 1e-4).all()
    noise = np.random.default_rng(0).integers(0, 256, (8, len(filters), 24, 24, 3), dtype="uint8")
    assert all((new >= scorer.per_unit_area(n, filters) - 1e-4).all() for n in noise)


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


def test_solved_tiles_alone_change_their_cache_key_and_cost_one_pass():
    render = RenderSettings(size=16, steps=8)
    before = units.Job("f" * 32, render, "none", {"conv1": (0,), "conv2": (0,)})
    after = units.Job("f" * 32, render, "none", {"conv1": (0,), "conv2": (0,)}, exact=("conv1",))
    changed = {(layer, variant) for layer in ("conv1", "conv2") for variant in ("channel", "negative", "neuron",
                                                                                 "diversity")
               if units.filter_key(before, layer, 0, variant, 0) != units.filter_key(after, layer, 0, variant, 0)}
    assert changed == {("conv1", "channel"), ("conv1", "negative"), ("conv1", "neuron")}
    first, second = units.filter_units(after)[:2]
    assert [n for *_, n in units.cost_stages(first, after, _Flat())[0]] == [1]
    assert [n for *_, n in units.cost_stages(second, after, _Flat())[0]] == [8]


class _Flat:
    """Costs of one FLOP per image-step, whatever the layer."""

    def step_flops(self, layer, side):
        return 1.0


@needs_shared()
@pytest.mark.shared
@pytest.mark.parametrize("name,layer,preprocess", [("vgg16_hed_notop.keras", "block1_conv1", "caffe"),
                                                  ("efficientnet_lite0_imagenet.keras", "stem_conv", "none")])
def test_real_first_layers_get_flat_tiles_that_beat_the_optimizer(name, layer, preprocess, monkeypatch):
    model = keras.saving.load_model(SHARED_MODELS / name)
    filters = list(range(8))
    renderer, images, recorded = render(model, layer, filters, size=48, preprocess=preprocess)
    assert renderer.exact
    assert (images == images[:, :1, :1]).all()  # flat, edge to edge: no frame, no hatching
    old, _ = optimized(monkeypatch, model, layer, filters, size=48, steps=16, preprocess=preprocess)
    scorer = Scorer(model, layer, caffe=preprocess == "caffe")
    np.testing.assert_allclose(scorer.plain(images, filters), recorded, rtol=1e-3, atol=1e-2)
    assert (scorer.per_unit_area(images, filters) >= scorer.per_unit_area(old, filters) - 1e-3).all()


def test_a_build_solves_its_first_layer_and_keys_those_tiles_apart(tmp_path, photo_dir, monkeypatch):
    from PIL import Image

    from gallery.build import pipeline

    path = tmp_path / "tiny.keras"
    tiny_classifier().save(path)
    jobs = []
    plan = units.filter_units
    monkeypatch.setattr(units, "filter_units", lambda job: jobs.append(job) or plan(job))
    config = BuildConfig(model=str(path), preprocess="none", render=RenderSettings(size=16, steps=3, batch=4),
                         images=(photo_dir,), out=tmp_path / "site", cache=tmp_path / "cache")
    pipeline.build(config)
    assert [job.exact for job in jobs] == [("conv1",)]
    tiles = [np.asarray(Image.open(config.out / "tiny" / "layers" / "conv1" / f"{i}.png").convert("RGB"))
             for i in range(6)]
    expected = fill(keras.saving.load_model(path).get_layer("conv1").kernel.numpy())
    np.testing.assert_array_equal(np.stack(tiles), np.broadcast_to(expected[:, None, None], (6, 16, 16, 3)))
    # Its pages say the image was solved, not optimized; the next layer's do not.
    site = config.out / "tiny" / "layers"
    assert "its image is not optimized but solved" in (site / "conv1" / "0.html").read_text()
    assert "not optimized but solved" not in (site / "conv2" / "0.html").read_text()
