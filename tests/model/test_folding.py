"""Batch normalization folded into the convolution before it (gallery.model.folding)."""

import keras
import numpy as np
import pytest
from keras import ops

from gallery.config import RenderSettings
from gallery.model import folding, graph
from gallery.render.optimize import FilterRenderer

from ..conftest import tiny_classifier


def _randomize(model, seed=0):
    """Weights and normalization statistics far from the identity, so a wrong fold shows."""
    rng = np.random.default_rng(seed)
    for _, layer in graph.walk(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 1, n), rng.normal(0, 1, n), rng.uniform(0.2, 3, n)])
        elif layer.weights:
            layer.set_weights([rng.normal(0, 0.3, w.shape) for w in layer.get_weights()])
    return model


def _model():
    """Each case: conv→BN (no bias), depthwise→BN, conv(relu)→BN (not folded: an activation
    between), a conv read by BN and by an Add (not folded), and conv→BN inside a nested model."""
    inner_in = keras.Input((None, None, 6))
    z = keras.layers.Conv2D(6, 3, padding="same", name="inner_conv")(inner_in)
    z = keras.layers.BatchNormalization(name="inner_bn")(z)
    inner = keras.Model(inner_in, z, name="inner")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Conv2D(6, 1, activation="relu", name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn3")(x)
    y = keras.layers.Conv2D(6, 1, name="c3")(x)
    x = keras.layers.Add()([keras.layers.BatchNormalization(name="bn4")(y), y])
    x = inner(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="last")(x)
    return _randomize(keras.Model(inputs, x, name="folds"))


def test_only_a_linear_convolution_read_by_its_normalization_alone_is_folded():
    model = _model()
    assert sorted((c.name, b.name) for c, b in folding.pairs(model)) == [
        ("c1", "bn1"), ("dw", "bn2"), ("inner_conv", "inner_bn")]


def test_the_folded_copy_computes_the_model_at_every_layer_the_loop_reads():
    model = _model()
    copy = folding.folded(model)
    assert copy is not model and folding.folded(model) is copy  # made once
    names = dict(graph.walk(copy))
    assert {n for n, layer in names.items() if isinstance(layer, folding.Folded)} == {"bn1", "bn2", "inner/inner_bn"}
    assert isinstance(names["bn3"], keras.layers.BatchNormalization)  # kept where it cannot fold
    x = np.random.default_rng(1).uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    # The loop reads a layer's input through the copy: every one must be the model's.
    for name in ("c2", "c3", "last", "inner/inner_conv"):
        want = ops.convert_to_numpy(graph.input_fn(model, graph.locate(model, name))(x))
        got = ops.convert_to_numpy(graph.input_fn(copy, graph.locate(copy, name))(x))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    # The model itself is untouched.
    assert isinstance(model.get_layer("bn1"), keras.layers.BatchNormalization)
    assert not model.get_layer("c1").use_bias


def test_a_model_without_a_normalization_to_fold_is_used_itself():
    model = tiny_classifier(softmax=False)
    assert folding.pairs(model) == [] and folding.folded(model) is model


def test_a_copy_that_disagrees_is_not_used(monkeypatch):
    model, original = _model(), folding._folded_weights
    monkeypatch.setattr(folding, "_folded_weights", lambda conv, bn: [w * 1.01 for w in original(conv, bn)])
    assert folding.folded(model) is model  # the probe caught a fold 1% off


def test_within_unfolded_the_model_is_used_itself():
    model = _model()
    with folding.unfolded():
        assert folding.folded(model) is model
    assert folding.folded(model) is not model


@pytest.mark.parametrize("layer", ["c2", "last"])
def test_the_renderer_loops_through_the_folded_copy_and_scores_on_the_model(layer):
    model = _model()
    renderer = FilterRenderer(model, layer, RenderSettings(size=16, steps=8, batch=2, transforms="none"))
    assert renderer._loop_model is folding.folded(model)
    images = renderer.images([0, 1])
    assert images.shape == (2, 16, 16, 3) and images.std() > 0
