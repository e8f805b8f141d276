"""The image's gradient through forward convolutions (gallery.model.backward)."""

import threading
from contextlib import nullcontext

import keras
import numpy as np
import pytest
from keras import ops

from gallery.config import RenderSettings
from gallery.model import backward, grad, precision
from gallery.model.swap import Swap
from gallery.render.optimize import FilterRenderer

from ..conftest import tiny_classifier

TF = grad.BACKEND == "tensorflow"

ELIGIBLE = {
    "3x3 same, relu": lambda: keras.layers.Conv2D(5, 3, padding="same", activation="relu"),
    "2x2 same (padded after)": lambda: keras.layers.Conv2D(5, 2, padding="same"),
    "2x3 valid": lambda: keras.layers.Conv2D(5, (2, 3), padding="valid"),
    "1x1": lambda: keras.layers.Conv2D(6, 1),
    "depthwise 3x3 same, relu6": lambda: keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6"),
    "depthwise 2x2 same": lambda: keras.layers.DepthwiseConv2D(2, padding="same"),
    "depthwise 3x2 valid, no bias": lambda: keras.layers.DepthwiseConv2D((3, 2), padding="valid", use_bias=False),
}


class Custom(keras.layers.Conv2D):
    """A subclass may compute otherwise: it keeps the backend's rule."""


INELIGIBLE = {
    "strided": lambda: keras.layers.Conv2D(5, 3, strides=2, padding="same"),
    "dilated": lambda: keras.layers.Conv2D(5, 3, dilation_rate=2, padding="same"),
    "grouped": lambda: keras.layers.Conv2D(4, 3, groups=2, padding="same"),
    "depth multiplier 2": lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
    "depthwise strided": lambda: keras.layers.DepthwiseConv2D(3, strides=2, padding="same"),
    "subclass": lambda: Custom(5, 3, padding="same"),
    "separable": lambda: keras.layers.SeparableConv2D(5, 3, padding="same"),
}


def _one_layer(make, seed=0):
    rng = np.random.default_rng(seed)
    inputs = keras.Input((9, 10, 4))
    model = keras.Model(inputs, make()(inputs))
    for weight in model.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    x = rng.normal(size=(2, 9, 10, 4)).astype("float32")
    dy = rng.normal(size=(2, *model.output.shape[1:])).astype("float32")
    return model, x, dy


def _forward_and_gradient(model, x, dy, rule: bool):
    """``(y, d Σ y·dy / dx, layers swapped)`` through the backend's rule or this module's."""
    swapped = []

    def loss(x):
        with nullcontext() if rule else backward.backend_rule():
            with backward.input_gradients(model) as n:
                swapped.append(n)
                y = model(x)
        return ops.sum(y * dy), y

    (_, y), g = grad.value_and_grad(loss)(ops.convert_to_tensor(x))
    return ops.convert_to_numpy(y), ops.convert_to_numpy(g), swapped[-1]


@pytest.mark.parametrize("name", list(ELIGIBLE))
def test_the_rule_gives_the_backends_output_and_input_gradient(name):
    model, x, dy = _one_layer(ELIGIBLE[name])
    assert backward.eligible(model.layers[-1])
    y0, g0, none = _forward_and_gradient(model, x, dy, rule=False)
    y1, g1, count = _forward_and_gradient(model, x, dy, rule=True)
    assert none == 0 and count == (1 if TF else 0)  # only TensorFlow's kernels are replaced
    np.testing.assert_array_equal(y1, y0)  # the forward is the same kernel
    np.testing.assert_allclose(g1, g0, rtol=0, atol=1e-5 * np.abs(g0).max())
    assert np.abs(g0).max() > 0


@pytest.mark.parametrize("name", list(INELIGIBLE))
def test_strided_dilated_grouped_multiplied_and_subclassed_layers_keep_the_backends_rule(name):
    model, x, dy = _one_layer(INELIGIBLE[name])
    assert not backward.eligible(model.layers[-1])
    y, g, count = _forward_and_gradient(model, x, dy, rule=True)
    assert count == 0 and np.isfinite(g).all()


def test_the_model_is_left_as_it_was_and_other_threads_see_the_backends_rule():
    model, x, dy = _one_layer(ELIGIBLE["depthwise 3x3 same, relu6"])
    layer = model.layers[-1]
    assert "call" not in vars(layer)
    seen, inside, done = [], threading.Event(), threading.Event()

    def elsewhere():
        inside.wait()
        seen.append(layer.call)
        seen.append(ops.convert_to_numpy(model(x)))  # runs Keras's own call
        done.set()

    thread = threading.Thread(target=elsewhere)
    thread.start()
    with backward.input_gradients(model) as count:
        inside.set()
        assert done.wait(60)
        assert ("call" in vars(layer)) == (count == 1)
    thread.join()
    assert "call" not in vars(layer)  # restored: the class's own method again
    np.testing.assert_array_equal(seen[1], ops.convert_to_numpy(model(x)))


def test_a_swap_switches_only_in_the_entering_thread_and_nests():
    class Thing:
        def say(self):
            return "plain"

    thing, outside = Thing(), []
    swap = Swap()
    with swap([(thing, "say", lambda original: lambda: "swapped " + original())]) as n:
        assert n == 1 and thing.say() == "swapped plain"
        with swap([(thing, "say", lambda original: lambda: "again " + original())]):
            assert thing.say() == "again swapped plain"
        worker = threading.Thread(target=lambda: outside.append(thing.say()))
        worker.start()
        worker.join()
        assert thing.say() == "swapped plain"
    assert outside == ["plain"] and thing.say() == "plain" and "say" not in vars(thing)


@pytest.mark.skipif(not TF, reason="the rule replaces TensorFlow's kernels only")
@pytest.mark.parametrize("rule", [True, False])
def test_the_renderers_loop_is_traced_through_the_rule_unless_told(monkeypatch, rule):
    traced = []
    original = backward._rule
    monkeypatch.setattr(backward, "_rule", lambda layer: traced.append(layer.name) or original(layer))
    model = tiny_classifier(softmax=False)
    settings = RenderSettings(size=16, steps=8, batch=2, transforms="none")
    if rule:
        images = FilterRenderer(model, "conv2", settings).images([0, 1])
    else:
        with backward.backend_rule():
            images = FilterRenderer(model, "conv2", settings).images([0, 1])
    assert images.shape == (2, 16, 16, 3)
    # conv1 feeds the target layer: the loop's trace swaps it (or, told so, nothing).
    assert ("conv1" in traced) == rule


@pytest.mark.skipif(not TF, reason="the rule replaces TensorFlow's kernels only")
def test_the_rule_computes_in_the_bf16_copys_precision():
    model = tiny_classifier(softmax=False)
    copy = precision.compute_copy(model, "bfloat16")
    x = np.random.default_rng(3).uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    dy = np.random.default_rng(4).normal(size=(2, 4)).astype("float32")
    y0, g0, _ = _forward_and_gradient(copy, x, dy, rule=False)
    y1, g1, count = _forward_and_gradient(copy, x, dy, rule=True)
    assert count >= 1 and y1.dtype == y0.dtype
    np.testing.assert_allclose(y1.astype("float32"), y0.astype("float32"), rtol=0, atol=1e-6)
    # bf16 keeps 8 bits of mantissa: the two routes round differently, by a few parts in a hundred.
    np.testing.assert_allclose(g1, g0, rtol=0, atol=0.05 * np.abs(g0).max())
