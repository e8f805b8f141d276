"""Convolutions that carry the gradient back to the image as forward convolutions.

A filter image's every step differentiates the network with respect to its input only.
For a stride-1 convolution that gradient is itself a convolution (:func:`grad.input_conv`),
and TensorFlow's CPU kernel for it took 1.1–4.9× the forward kernel's time on the same
shapes; computed by the forward kernel, a renderer's step on VGG16-HED, MobileNetV2 and
EfficientNet-Lite0 ran 1.01–1.29× faster in two runs (``python bench/backward.py``). The result is
the same gradient to float32 rounding (a few parts in 10⁷); the tiles are as strong but
not the same pixels, and keep their cache keys, which name the recipe, not the arithmetic.

:func:`input_gradients` swaps the rule into the model's eligible layers while a function
traces (:class:`gallery.model.swap.Swap`: this thread only, restored on exit), so the
user's model is unchanged and every later call of the compiled function keeps the rule.
Eligible: ``Conv2D`` (one group) and ``DepthwiseConv2D`` (depth multiplier 1), channels
last, stride 1, no dilation, ``same`` or ``valid`` padding; subclasses, which may compute
otherwise, are left alone. Strided layers keep the backend's rule: the same trick, through
a zero-filled upsampling of the gradient, took 1.4–1.9× TensorFlow's time there.
"""

from __future__ import annotations

from contextlib import contextmanager

import keras
from keras import ops

from . import grad, graph
from .swap import Swap, ThreadFlag

_swap = Swap()
_backend = ThreadFlag()


def eligible(layer) -> bool:
    """Whether ``layer`` is a stride-1 2-D convolution this module computes."""
    if type(layer) is keras.layers.Conv2D:
        shaped = layer.groups == 1
    elif type(layer) is keras.layers.DepthwiseConv2D:
        shaped = layer.depth_multiplier == 1
    else:
        return False
    return (shaped and tuple(layer.strides) == (1, 1) and tuple(layer.dilation_rate) == (1, 1)
            and layer.data_format == "channels_last" and layer.padding in ("same", "valid"))


def _rule(layer):
    return grad.input_conv(isinstance(layer, keras.layers.DepthwiseConv2D), layer.padding, tuple(layer.kernel_size))


def _convolution(rule):
    """A Conv2D's ``convolution_op(inputs, kernel)``: only the convolution, Keras adds the bias."""
    return lambda original: lambda inputs, kernel: rule(inputs, ops.cast(kernel, inputs.dtype))


def _depthwise_call(layer, rule):
    """A DepthwiseConv2D's ``call``, which has no separate convolution: Keras's own, with the rule."""
    def call(inputs):
        outputs = rule(inputs, ops.cast(layer.kernel, inputs.dtype))
        if layer.use_bias:
            outputs = ops.add(outputs, ops.cast(layer.bias, outputs.dtype))
        return layer.activation(outputs) if layer.activation is not None else outputs

    return lambda original: call


@contextmanager
def input_gradients(model: keras.Model):
    """Within this block, in this thread, the model's eligible convolutions pass the
    gradient to their input through forward convolutions (TensorFlow; elsewhere a no-op)."""
    if _backend:
        yield 0
        return
    swaps = []
    for _, layer in graph.walk(model):
        rule = _rule(layer) if eligible(layer) else None
        if rule is None:
            continue
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            swaps.append((layer, "call", _depthwise_call(layer, rule)))
        else:
            swaps.append((layer, "convolution_op", _convolution(rule)))
    if not swaps:
        yield 0
        return
    with _swap(swaps) as count:
        yield count


def backend_rule():
    """Within this block, in this thread, :func:`input_gradients` swaps nothing: functions
    traced here keep the backend's own gradients (``bench/backward.py``'s baseline)."""
    return _backend()
