"""Which layers take the coarse contrast bound, and that a build's cache keys and the
renderer agree on it (gallery.render.kinds, RenderSettings.for_layer)."""

from __future__ import annotations

import pytest

from gallery.config import RenderSettings
from gallery.orchestrate import units
from gallery.render import exact, kinds
from gallery.render.optimize import FilterRenderer

from ..conftest import _keras, tiny_transfer


def strided(nested: bool = False):
    """conv (stride 1) → pool → conv (2) → pool → conv (4) → stride-2 conv (8), any size;
    ``nested``: the same inside an outer model, as transfer learning wraps a backbone."""
    keras = _keras()
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="s1")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="s2")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="s4")(x)
    x = keras.layers.Conv2D(3, 3, strides=2, padding="same", activation="relu", name="s8")(x)
    model = keras.Model(inputs, x, name="strided")
    if not nested:
        return model
    outer_in = keras.Input((32, 32, 3))
    return keras.Model(outer_in, model(outer_in), name="outer")


def test_layers_are_coarse_from_an_output_stride_of_four():
    model = strided()
    assert kinds.strides(model, ["s1", "s2", "s4", "s8"]) == {"s1": 1, "s2": 2, "s4": 4, "s8": 8}
    assert kinds.coarse(model, ["s1", "s2", "s4", "s8"]) == ("s4", "s8")
    nested = strided(nested=True)  # a fixed 32-pixel input, the layers inside a backbone
    assert kinds.coarse(nested, ["strided/s1", "strided/s2", "strided/s4", "strided/s8"]) == ("strided/s4", "strided/s8")


def test_a_model_with_depthwise_convolutions_or_other_than_rgb_inputs_has_no_coarse_layer():
    assert kinds.coarse(tiny_transfer(), ["inner/c1", "inner/sep"]) == ()
    keras = _keras()
    for channels in (1, 4):
        inputs = keras.Input((32, 32, channels))
        x = keras.layers.Conv2D(2, 3, strides=4, padding="same", name="s4")(inputs)
        assert kinds.coarse(keras.Model(inputs, x), ["s4"]) == ()


def test_for_layer_folds_the_coarse_bound_into_the_one_bound_a_tile_is_keyed_by():
    plain = RenderSettings()
    wide = RenderSettings(coarse_contrast=3.0)
    assert wide.for_layer(False, coarse=True).contrast == 3.0
    assert wide.for_layer(False, coarse=True).key()["contrast"] == 3.0
    # A fine layer's tiles keep the key they had before coarse layers had a bound of their own.
    assert wide.for_layer(False, coarse=False).key() == plain.for_layer(False).key() == plain.key()
    assert "contrast" not in wide.for_layer(True, coarse=True).key()  # linear: unbounded
    assert RenderSettings(contrast=None, coarse_contrast=3.0).for_layer(False, coarse=True).contrast is None
    with pytest.raises(Exception, match="coarse_contrast must be a positive number"):
        RenderSettings(coarse_contrast=0)


def test_the_renderer_and_the_builds_cache_keys_agree_on_every_layers_bound():
    model = strided()
    settings = RenderSettings(size=16, steps=8, coarse_contrast=3.0)
    layers = ("s1", "s2", "s4", "s8")
    job = units.Job(fingerprint="f", render=settings, preprocess="none", selection={layer: (0,) for layer in layers},
                    exact=tuple(layer for layer in layers if exact.linear(model, layer, "none")),
                    coarse=kinds.coarse(model, layers))  # as the pipeline makes its job
    for layer in layers:
        rendered = FilterRenderer(model, layer, settings, "none").settings
        assert rendered.key() == job.settings(layer).key()
        assert rendered.contrast == {"s1": None, "s2": 2.0, "s4": 3.0, "s8": 3.0}[layer]  # s1: linear in the pixels
