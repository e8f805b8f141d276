"""Exact neuron images for conv layers that are linear in the pixels: no optimization.

When only rescaling, normalisation and zero padding stand between the pixels and a conv
layer (:func:`gallery.model.graph.linear_in_pixels`, with a named, affine preprocessing),
a filter's pre-activation is affine in the image ``x ∈ [0, 1]^(h·w·3)``::

    a(x) = c + Σ_p Σ_k G[p, k] · x[p, k],   G = ∂a/∂x, the same for every x.

The neuron variant's objective, the unit at the map's centre, is such an ``a``. Under
the box constraint its maximum is reached coordinate by coordinate ("bang-bang"):
``x = 1`` where ``G > 0``, ``0`` where ``G < 0``; where ``G = 0`` any value is optimal
and the tile shows grey. One gradient at any image gives ``G``, so the tile is the exact
optimum: the window of the kernel's signs (through the preprocessing's gain; caffe's BGR
order included) on grey, read inside a canvas wider by a :func:`margin` so that zero
padding at the tile's edge plays no part.

The channel's mean is affine too, but degenerate: over positions it sums every tap, so
its exact optimum is a flat fill of one corner of the colour cube by the signs of each
kernel's sums, the same fill for every edge detector. Those images are optimized on the
mean after a ReLU instead (:func:`gallery.render.objectives.rectified`).
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from ..model import circuits, grad, graph, preprocess as prep

# Variants solved exactly: linear in the filter's map, so their optimum is bang-bang, and
# not degenerate (see the module's text).
VARIANTS = ("neuron",)
# |G| at most this share of the image's largest |G| counts as zero: float32 sums of
# weights that cancel exactly leave ~1e-7 of noise, which must not pick a corner. So does
# a filter whose weights are at most this share of its layer's strongest filter's.
TIE = 1e-5
GREY = 128


def margin(layer) -> int:
    """Pixels added on each side so every tile pixel is seen by the whole kernel: the
    kernel's reach plus one stride, rounded up to whole strides (which keeps each pixel's
    phase modulo the stride, and 'same' padding's split, unchanged)."""
    reach = max(int(d) * (int(k) - 1) + 1 for k, d in zip(layer.kernel_size, layer.dilation_rate))
    stride = math.lcm(*(int(s) for s in layer.strides))
    return stride * math.ceil((reach + stride) / stride)


def bang_bang(gradients: np.ndarray) -> np.ndarray:
    """uint8 images: 255 where the gradient is positive, 0 where negative, grey at ties."""
    g = np.asarray(gradients, dtype="float64")
    tie = TIE * np.abs(g).max(axis=(1, 2, 3), keepdims=True)
    return np.where(g > tie, 255, np.where(g < -tie, 0, GREY)).astype("uint8")


def maximize(objective, layer, size: int, indices, channels: int = 3) -> np.ndarray:
    """uint8 ``(n, size, size, channels)``: the exact maximizer of ``objective(x, indices) -> (n,)``
    over images ``x`` in ``[0, 1]``, an affine function of ``x``."""
    pad = margin(layer)
    side = size + 2 * pad
    x = ops.convert_to_tensor(np.full((len(indices), side, side, channels), 0.5, "float32"))
    idx = ops.convert_to_tensor(np.asarray(indices, dtype="int32"))
    _, g = grad.value_and_grad(lambda x, idx: (ops.sum(objective(x, idx)), 0.0))(x, idx)
    g = np.array(ops.convert_to_numpy(g), dtype="float64")
    g[silent(layer, indices)] = 0.0
    return bang_bang(g[:, pad:pad + size, pad:pad + size])


def silent(layer, indices) -> np.ndarray:
    """Per image, whether its filter's weights are negligible beside the layer's strongest
    (pruned filters, ~1e-8 in EfficientNet's stem): every image is then optimal, so grey,
    not the corner that float noise in the signs would pick."""
    strengths = circuits.input_strengths(layer)
    if strengths is None:
        return np.zeros(len(indices), bool)
    peak = strengths.max(axis=1)
    return peak[np.asarray(indices)] <= TIE * peak.max()


def linear(model, layer: str, preprocess) -> bool:
    """Whether ``layer``'s pre-activation is affine in the pixels: the layer is linear in
    them, and so is the preprocessing (a named convention or a per-channel standardisation;
    a callable's linearity is not known)."""
    return prep.affine(preprocess) and graph.linear_in_pixels(model, layer)
