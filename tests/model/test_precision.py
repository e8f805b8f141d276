"""bf16 compute for the optimization loop: a copy of the model, float32 scores."""

import numpy as np
import pytest
from keras import ops

from gallery import presets
from gallery.model import precision
from gallery.config import RenderSettings
from gallery.errors import GalleryError
from gallery.render.optimize import FilterRenderer

from ..conftest import tiny_backbone, tiny_classifier, tiny_transfer
from ..helpers.bf16 import needs_bf16



@needs_bf16
@pytest.mark.parametrize("build", [lambda: tiny_classifier(softmax=False), tiny_transfer])
@pytest.mark.slow
def test_the_copy_computes_in_bf16_with_the_same_weights(build):
    model = build()
    copy = precision.compute_copy(model, "bfloat16")
    assert copy is not model and precision.compute_copy(model, "bfloat16") is copy  # made once
    assert all(layer.dtype_policy.name == "float32" for layer in model.layers)  # untouched
    for layer in copy._flatten_layers(include_self=False):
        if layer.weights and not hasattr(layer, "layers"):  # leaves; a nested model only holds them
            assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32", layer.name
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    exact, fast = ops.convert_to_numpy(model(x)), ops.convert_to_numpy(copy(x)).astype("float32")
    assert fast.shape == exact.shape
    # bf16 keeps 8 bits of mantissa: a few parts in a thousand per operation.
    np.testing.assert_allclose(fast, exact, atol=0.03 * np.abs(exact).max() + 1e-3)
    assert not np.array_equal(fast, exact)  # really rounded to bf16


def test_float32_is_the_model_itself_and_unknown_precisions_are_refused():
    model = tiny_classifier()
    assert precision.compute_copy(model, "float32") is model
    with pytest.raises(GalleryError, match="'float16'"):
        precision.compute_copy(model, "float16")
    with pytest.raises(GalleryError, match="precision must be 'float32' or 'bfloat16', got 'half'"):
        RenderSettings(precision="half")


def test_precision_is_part_of_the_cache_key_only_when_reduced():
    assert "precision" not in RenderSettings().key()  # caches made before bf16 stay valid
    assert RenderSettings(precision="bfloat16").key()["precision"] == "bfloat16"


@needs_bf16
@pytest.mark.slow
def test_bf16_loop_raises_the_objective_as_float32_does():
    model = tiny_classifier()
    reached = {
        (p, steps): FilterRenderer(model, "conv2", RenderSettings(size=16, steps=steps, precision=p)).render(
            [0, 1, 2, 3, 4])[1]
        for p in ("float32", "bfloat16") for steps in (1, 30)
    }
    start, bf16, f32 = reached[("bfloat16", 1)], reached[("bfloat16", 30)], reached[("float32", 30)]
    assert np.all(bf16 > start + 0.05), (start, bf16)
    # Scored through the float32 model, so the figures compare: bf16 gets as far.
    assert np.all(bf16 > f32 - 0.1 * np.abs(f32) - 0.05), (bf16, f32)


def test_a_model_with_depthwise_convolutions_keeps_float32_in_builds_and_in_the_api(monkeypatch):
    """One rule for both callers (precision.settings_for): on a CPU with bf16 units, a model
    with depthwise convolutions takes the settings made without them."""
    from gallery.model import grad
    from gallery.render import optimize

    bf16, plain = RenderSettings(precision="bfloat16"), RenderSettings()
    assert precision.settings_for(tiny_backbone(), bf16, plain) is plain
    assert precision.settings_for(tiny_classifier(), bf16, plain) is bf16
    assert precision.settings_for(tiny_backbone(), bf16, None) is bf16  # none made: a GPU, or --precision given

    class Chosen(Exception):
        pass

    def renderer(model, layer, settings, preprocess=None):
        raise Chosen(settings)

    monkeypatch.setattr(grad, "accelerator", lambda: None)
    monkeypatch.setattr(grad, "cpu_bf16", lambda: True)  # an AMX CPU
    monkeypatch.setattr(optimize, "FilterRenderer", renderer)
    for model, layer, amx in ((tiny_classifier(), "conv1", True), (tiny_backbone(), "c1", False)):
        with pytest.raises(Chosen) as chosen:
            optimize.visualize_filters(model, layer, [0], seed=3)
        settings = chosen.value.args[0]
        assert settings == RenderSettings(seed=3, **presets.render_part(presets.preset("default", None, amx)))
        assert settings.precision == ("bfloat16" if amx else "float32")
