"""What a filter image maximizes.

:func:`own_preactivation` gives each image in a batch the pre-activation map of its
own filter; an objective is a small callable from that ``(batch, h, w)`` map to one
score per image. Maximizing the pre-activation (the conv output before its ReLU)
keeps a gradient flowing for filters whose ReLU output is zero on every natural
image, which would otherwise come out blank.
"""

from __future__ import annotations

import keras
from keras import ops


def channel(z):
    """The mean over space: the filter's response wherever it occurs (the default)."""
    return ops.mean(z, axis=(1, 2))


def neuron(z):
    """The unit at the centre of the map."""
    h, w = z.shape[1], z.shape[2]
    return z[:, h // 2, w // 2]


def negative(objective):
    """What suppresses the filter."""
    return lambda z: -objective(z)


OBJECTIVES = {"channel": channel, "neuron": neuron}


def own_preactivation(layer, x, indices):
    """``(batch, h, w)``: for image ``b``, the linear output of filter ``indices[b]``.

    Plain convolutions compute only the selected output channels (the kernel is sliced
    before the convolution), so a batch of B filters costs B channels, not all of them.
    """
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise = ops.depthwise_conv(
            x, layer.depthwise_kernel, layer.strides, layer.padding, layer.data_format, layer.dilation_rate
        )
        z = ops.conv(depthwise, ops.take(layer.pointwise_kernel, indices, axis=-1), 1, "valid", layer.data_format)
    elif isinstance(layer, keras.layers.DepthwiseConv2D):
        full = ops.depthwise_conv(
            x, layer.kernel, layer.strides, layer.padding, layer.data_format, layer.dilation_rate
        )
        z = ops.take(full, indices, axis=-1)
    elif getattr(layer, "groups", 1) == 1:
        z = ops.conv(
            x, ops.take(layer.kernel, indices, axis=-1), layer.strides, layer.padding,
            layer.data_format, layer.dilation_rate,
        )
    else:
        full = layer.convolution_op(x, layer.kernel)
        z = ops.take(full, indices, axis=-1)
    if getattr(layer, "use_bias", False) and layer.bias is not None:
        z = z + ops.take(layer.bias, indices, axis=0)
    # z[b, :, :, j] is filter indices[j] on image b; keep the diagonal j == b.
    return ops.transpose(ops.diagonal(z, axis1=0, axis2=3), (2, 0, 1))
