"""Batch normalization folded into the convolution before it, for the optimization loop.

At inference a BatchNormalization layer is an affine map per channel,
``y = γ·(z − μ)/√(σ² + ε) + β`` (Ioffe & Szegedy, ICML 2015). After a convolution
``z = W⋆x + b`` with no activation between them, it folds into the convolution:
``W' = s·W`` and ``b' = s·(b − μ) + β`` with ``s = γ/√(σ² + ε)`` per output channel (Jacob
et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference", CVPR 2018, §3.2). The loop runs through a copy of the model so folded, with
each folded normalization replaced by a layer of the same name that passes its input on,
so every layer keeps its name and place; the same function to float32 rounding, without
the normalizations' multiplications and additions forward and back (``bench/backward.py``
times a step with and without). Scores,
feature maps and CAMs use the model itself.

Folded: a ``Conv2D`` or ``DepthwiseConv2D`` (exact classes, channels last, linear
activation) whose output only a ``BatchNormalization`` on the channel axis reads, each
called once. The copy is checked against the model on a probe before use; a model with
nothing to fold, or one that cannot be copied or whose copy disagrees, is used itself.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np

from . import graph
from .swap import ThreadFlag

_folded: "weakref.WeakKeyDictionary[keras.Model, keras.Model]" = weakref.WeakKeyDictionary()
_unfolded = ThreadFlag()
TOLERANCE = 1e-4  # of the probe's largest output, relative: float32 rounding, not a wrong fold


class Folded(keras.layers.Layer):
    """Where a folded BatchNormalization was: its input, unchanged."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _channel_axis(bn) -> bool:
    axis = bn.axis[0] if isinstance(bn.axis, (list, tuple)) and len(bn.axis) == 1 else bn.axis
    return axis in (-1, 3)


def pairs(model: keras.Model) -> list[tuple]:
    """``[(conv, normalization)]``: every convolution and the normalization folded into it."""
    found = []
    for container in graph.containers(model):
        for conv in container.layers:
            if (type(conv) not in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
                    or graph.activation_name(conv) != "linear" or conv.data_format != "channels_last"
                    or len(graph.calls(conv)) != 1):
                continue
            bn = graph.sole_consumer(container, conv)
            if type(bn) is keras.layers.BatchNormalization and _channel_axis(bn):  # called once: sole_consumer
                found.append((conv, bn))
    return found


def _numpy(value) -> np.ndarray:
    return keras.ops.convert_to_numpy(value).astype("float64")


def _folded_weights(conv, bn) -> list[np.ndarray]:
    mean = _numpy(bn.moving_mean)  # one per output channel: the shape every other term takes
    gamma = _numpy(bn.gamma) if bn.gamma is not None else np.ones_like(mean)
    beta = _numpy(bn.beta) if bn.beta is not None else np.zeros_like(mean)
    bias = _numpy(conv.bias) if conv.use_bias else np.zeros_like(mean)
    scale = gamma / np.sqrt(_numpy(bn.moving_variance) + bn.epsilon)
    kernel = _numpy(conv.kernel)
    # A depthwise kernel's output channel c·multiplier + m is kernel[..., c, m].
    kernel = kernel * (scale.reshape(kernel.shape[2:]) if isinstance(conv, keras.layers.DepthwiseConv2D) else scale)
    return [kernel.astype("float32"), (scale * (bias - mean) + beta).astype("float32")]


def _copy(model: keras.Model, found: list[tuple]) -> keras.Model:
    folds, norms = {id(c): b for c, b in found}, {id(b) for _, b in found}

    def clone(layer):
        if id(layer) in norms:
            return Folded(name=layer.name)
        config = layer.get_config()
        return layer.__class__.from_config({**config, "use_bias": True} if id(layer) in folds else config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copies = dict(graph.walk(copy))
    for name, layer in graph.walk(model):
        if id(layer) in norms or not layer.weights:
            continue
        weights = _folded_weights(layer, folds[id(layer)]) if id(layer) in folds else layer.get_weights()
        copies[name].set_weights(weights)
    return copy


def _agrees(model: keras.Model, copy: keras.Model) -> bool:
    side = [d or 64 for d in model.inputs[0].shape[1:3]]
    probe = np.random.default_rng(0).uniform(0, 255, (1, *side, model.inputs[0].shape[-1])).astype("float32")
    exact = keras.ops.convert_to_numpy(model.call(probe))
    fast = keras.ops.convert_to_numpy(copy.call(probe))
    return exact.shape == fast.shape and np.abs(fast - exact).max() <= TOLERANCE * max(np.abs(exact).max(), 1e-6)


def folded(model: keras.Model) -> keras.Model:
    """``model``'s copy with every normalization that can be folded, folded (made once per
    model); ``model`` itself where there is none, or the copy cannot be made or disagrees,
    or within :func:`unfolded`."""
    if _unfolded:
        return model
    if model not in _folded:
        found, result = pairs(model), model
        if found:
            try:
                copy = _copy(model, found)
                result = copy if _agrees(model, copy) else model
            except Exception:  # an optimization only: a model Keras cannot copy renders unfolded
                result = model
        _folded[model] = result
    return _folded[model]


def unfolded():
    """Within this block, in this thread, :func:`folded` gives the model itself
    (``bench/backward.py``'s baseline)."""
    return _unfolded()
