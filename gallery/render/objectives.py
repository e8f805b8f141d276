"""What a filter image maximizes.

:func:`own_preactivation` gives each image in a batch the pre-activation map of its
own filter; an objective is a small callable from that ``(batch, h, w)`` map to one
score per image. Maximizing the pre-activation (the conv output before its ReLU)
keeps a gradient flowing for filters whose ReLU output is zero on every natural
image, which would otherwise come out blank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from keras import ops

from ..config import DIVERSE_COPIES


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


def rectified(z):
    """The mean square of the map after a ReLU: the filter's response where it fires,
    its strongest units weighed most.

    For a layer linear in the pixels the plain mean is degenerate: by linearity it is the
    response to the image's mean colour, so it sees only each kernel's sums, and its
    optimum is a flat fill of a corner of the colour cube whatever pattern the kernel
    detects (an edge detector, whose weights nearly cancel, included). After the ReLU,
    negative responses no longer cancel positive ones, so the optimum shows what makes
    the filter fire: its edge, repeated, for an edge detector; a fill only for a filter
    of one colour. Squared, because the tile must reach a higher peak than photos do
    (the figure they are ranked by) without pushing every pixel to the colour cube's
    corners: on the three first layers of ``bench/first_layers.py`` (64 steps of 0.05,
    1/f), 40 of 43 live tiles beat the best photo's peak this way, 22 with the plain
    rectified mean; steps of 0.2 bring both to all (a pruned filter aside), but the
    rectified mean's tiles then have 64–95% of their channel values clipped (median).

    Where no unit fires, the ReLU passes no gradient: a filter below zero on the starting
    noise would keep it. Such an image raises its strongest unit instead, until one fires.
    """
    strongest = ops.max(z, axis=(1, 2))
    return ops.where(strongest > 0, ops.mean(ops.square(ops.relu(z)), axis=(1, 2)), strongest)


def gram_similarity(features, copies: int):
    """Each image's mean cosine similarity to the other images of its group, ``(batch,)``.

    Images come in consecutive groups of ``copies`` (one group per filter). Style is
    compared through Gram matrices ``G = Fᵀ F / (h·w)`` of the features ``F (h·w, c)``
    the filter reads, as in Lucid's ``diversity`` objective (Olah et al., Distill 2017),
    here of the centred features (covariances).
    """
    b, h, w, c = features.shape
    flat = ops.reshape(features, (-1, copies, h * w, c))
    # Centred per channel: raw Gram matrices of ReLU features are dominated by their
    # means and sit near cosine 1 whatever the pattern, leaving the penalty no gradient.
    flat = flat - ops.mean(flat, axis=2, keepdims=True)
    gram = ops.einsum("gkpc,gkpd->gkcd", flat, flat) / float(h * w)
    gram = ops.reshape(gram, (-1, copies, c * c))
    unit = gram / (ops.norm(gram, axis=-1, keepdims=True) + 1e-8)
    cosine = ops.einsum("gkx,gjx->gkj", unit, unit)
    others = ops.sum(cosine, axis=-1) - ops.diagonal(cosine, axis1=1, axis2=2)  # not itself
    return ops.reshape(others / float(max(copies - 1, 1)), (-1,))


@dataclass(frozen=True)
class Variant:
    """One kind of filter image: what it maximizes and how many images each filter gets.

    ``diversity`` weighs the Gram-similarity penalty against the objective's own size
    (held constant for the gradient), so one weight suits every layer whatever the scale
    of its activations: at weight 1, identical images would give up their whole
    objective, so copies part as soon as that costs less than the similarity.
    """

    name: str
    objective: Callable
    copies: int = 1
    diversity: float = 0.0

    def score(self, z, features):
        value = self.objective(z)
        if not self.diversity:
            return value
        size = ops.stop_gradient(ops.abs(value)) + 1e-3
        return value - self.diversity * size * gram_similarity(features, self.copies)


VARIANTS = {
    "channel": Variant("channel", channel),
    "neuron": Variant("neuron", neuron),
    "negative": Variant("negative", negative(channel)),
    "diversity": Variant("diversity", channel, copies=DIVERSE_COPIES, diversity=1.0),
}

# Layers linear in the pixels (gallery.model.graph.linear_in_pixels) maximize rectified
# means instead (see :func:`rectified`); the neuron variant keeps its plain objective,
# which is not degenerate there and is solved exactly (gallery.render.exact).
LINEAR_VARIANTS = {
    **VARIANTS,
    "channel": Variant("channel", rectified),
    "negative": Variant("negative", lambda z: rectified(-z)),
    "diversity": Variant("diversity", rectified, copies=DIVERSE_COPIES, diversity=1.0),
}


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
