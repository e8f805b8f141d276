import keras
import numpy as np
import pytest
from keras import ops

from gallery.render.objectives import VARIANTS, channel, gram_similarity, negative, neuron, own_preactivation


def _linear(layer, x):
    """The layer's output with its activation removed, computed by Keras itself."""
    saved = layer.activation
    layer.activation = keras.activations.linear
    try:
        return ops.convert_to_numpy(layer(x))
    finally:
        layer.activation = saved


@pytest.mark.parametrize("make", [
    lambda: keras.layers.Conv2D(5, 3, padding="same", activation="relu"),
    lambda: keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
    lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu"),
    lambda: keras.layers.SeparableConv2D(4, 3, padding="same", activation="relu"),
])
@pytest.mark.slow
def test_own_preactivation_is_the_diagonal_of_the_linear_output(make):
    layer = make()
    rng = np.random.default_rng(0)
    x = ops.convert_to_tensor(rng.normal(size=(3, 9, 9, 3)).astype("float32"))
    layer.build(x.shape)
    if getattr(layer, "bias", None) is not None:
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    indices = np.array([2, 0, 3], "int32")
    ours = ops.convert_to_numpy(own_preactivation(layer, x, ops.convert_to_tensor(indices)))
    full = _linear(layer, x)
    for b, f in enumerate(indices):
        np.testing.assert_allclose(ours[b], full[b, :, :, f], atol=1e-4)


def test_objectives_closed_forms():
    z = ops.convert_to_tensor(np.arange(2 * 3 * 3, dtype="float32").reshape(2, 3, 3))
    np.testing.assert_allclose(ops.convert_to_numpy(channel(z)), [4.0, 13.0])
    np.testing.assert_allclose(ops.convert_to_numpy(neuron(z)), [4.0, 13.0])
    np.testing.assert_allclose(ops.convert_to_numpy(negative(channel)(z)), [-4.0, -13.0])


def test_gram_similarity_closed_form():
    """Within a group: a copy scaled by 3 has cosine 1; features on disjoint channels, 0."""
    rng = np.random.default_rng(0)
    a = rng.random((1, 3, 3, 4)).astype("float32")
    disjoint = np.zeros_like(a)
    a[..., 2:] = 0.0
    disjoint[..., 2:] = rng.random((1, 3, 3, 2))
    features = np.concatenate([a, 3 * a, disjoint, a, disjoint, 2 * disjoint])  # two groups of three
    sim = ops.convert_to_numpy(gram_similarity(ops.convert_to_tensor(features), 3))
    np.testing.assert_allclose(sim, [0.5, 0.5, 0.0, 0.0, 0.5, 0.5], atol=1e-5)


def test_diversity_variant_trades_similarity_against_the_objective():
    variant = VARIANTS["diversity"]
    copies_of = variant.copies
    z = ops.convert_to_tensor(np.full((copies_of, 2, 2), 4.0, "float32"))
    pattern = np.random.default_rng(1).random((1, 2, 2, 3)).astype("float32")
    same = ops.convert_to_tensor(np.repeat(pattern, copies_of, axis=0))
    # Identical images: similarity 1, so each loses `diversity` times its objective.
    np.testing.assert_allclose(ops.convert_to_numpy(variant.score(z, same)),
                               4.0 - variant.diversity * (4.0 + 1e-3), atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(VARIANTS["negative"].score(z, same)), -4.0)
