"""Which layers take the coarse layers' and the depthwise models' settings, and that a
build's cache keys, its manifest and the renderer agree on them (gallery.render.kinds,
RenderSettings.for_layer)."""

from __future__ import annotations

import pytest

from gallery.config import RenderSettings
from gallery.model import graph
from gallery.orchestrate import pipeline, units
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


def test_for_layer_folds_each_kinds_slope_and_step_into_the_ones_a_tile_is_keyed_by():
    s = RenderSettings(learning_rate=0.2, decay=1.5, coarse_decay=1.25, depthwise_lr=0.07, depthwise_decay=1.1,
                       depthwise_momentum=0.6)
    assert (s.for_layer(False).decay, s.for_layer(False).learning_rate) == (1.5, 0.2)
    assert s.for_layer(False).momentum == 0.9 and "momentum" not in s.for_layer(False, coarse=True).key()
    assert s.for_layer(False, coarse=True).key()["decay"] == 1.25
    assert s.for_layer(False, coarse=True).key()["lr"] == 0.2
    depthwise = s.for_layer(False, depthwise=True).key()
    assert (depthwise["lr"], depthwise["decay"], depthwise["momentum"]) == (0.07, 1.1, 0.6)
    assert s.for_layer(True, depthwise=True).key() == s.for_layer(True).key()  # linear: no kind's settings
    folded = s.for_layer(False, coarse=True)
    assert all(getattr(folded, name) is None for name in RenderSettings.KINDS)  # the key names what was used
    # A slope of 0 is a slope (a flat spectrum), not "unset".
    assert RenderSettings(coarse_decay=0.0).for_layer(False, coarse=True).decay == 0.0
    # MACO's spectrum is measured, not a slope, and its step was tuned on its own: kinds leave both.
    maco = RenderSettings(parameterization="maco").for_layer(False, depthwise=True)
    assert (maco.learning_rate, maco.decay, maco.momentum) == (0.2, 1.5, 0.9)
    off = RenderSettings(coarse_decay=None, depthwise_lr=None, depthwise_decay=None, depthwise_momentum=None)
    assert off.for_layer(False, coarse=True, depthwise=True).key()["lr"] == off.learning_rate
    # Adam's beta1 is named in a key only when it is not 0.9: tiles cached before it was a setting stay valid,
    # and a changed one is re-rendered, never mixed in.
    assert off.for_layer(False, depthwise=True).key() == {**off.key()} and "momentum" not in off.key()
    assert RenderSettings(momentum=0.5).key() == {**off.key(), "momentum": 0.5}
    for value in (1, 1.0, -0.1, True, float("nan")):
        with pytest.raises(Exception, match=f"momentum must be a number in \\[0, 1\\), got {value!r}"):
            RenderSettings(momentum=value)
    for name in ("coarse_decay", "depthwise_lr", "depthwise_decay"):
        with pytest.raises(Exception, match=f"{name} must be a finite number of at least 0 or None, got -1"):
            RenderSettings(**{name: -1})


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
        assert rendered.decay == {"s1": 1.5, "s2": 1.5, "s4": 1.25, "s8": 1.25}[layer]
    # The manifest names the fine layers' settings, then what the coarse ones take instead.
    shown = pipeline._render_settings(job)
    assert (shown["contrast"], shown["decay"], shown["coarse layers"]) == (2.0, 1.5, "decay 1.25, contrast 3.0")


def test_a_depthwise_models_layers_take_its_step_and_slope_in_the_renderer_the_keys_and_the_manifest():
    model = tiny_transfer()
    settings = RenderSettings(size=16, steps=8, depthwise_lr=0.07, depthwise_decay=1.1, depthwise_momentum=0.6)
    layers = ("inner/c1", "inner/sep")
    job = units.Job(fingerprint="f", render=settings, preprocess="none", selection={layer: (0,) for layer in layers},
                    exact=tuple(layer for layer in layers if exact.linear(model, layer, "none")),
                    coarse=kinds.coarse(model, layers), depthwise=graph.has_depthwise(model))
    assert job.depthwise and job.coarse == () and job.exact == ("inner/c1",)
    for layer in layers:
        rendered = FilterRenderer(model, layer, settings, "none").settings
        assert rendered.key() == job.settings(layer).key()
    sep = job.settings("inner/sep")
    assert (sep.learning_rate, sep.decay, sep.momentum) == (0.07, 1.1, 0.6)
    shown = pipeline._render_settings(job)
    assert (shown["lr"], shown["decay"], shown["momentum"]) == (0.07, 1.1, 0.6) and "coarse layers" not in shown
