"""Exact filter images for conv layers that are linear in the pixels: no optimization.

When only rescaling, normalisation and zero padding stand between the pixels and a conv
layer (:func:`gallery.model.graph.linear_in_pixels`, with a named, affine preprocessing),
a filter's objective is affine in the image ``x ∈ [0, 1]^(h·w·3)``::

    a(x) = c + Σ_p Σ_k G[p, k] · x[p, k],   G = ∂a/∂x, the same for every x.

Under the box constraint its maximum is reached coordinate by coordinate ("bang-bang"):
``x = 1`` where ``G > 0``, ``0`` where ``G < 0``; where ``G = 0`` any value is optimal
and the tile shows grey. One gradient at any image gives ``G``, so the tile is the exact
optimum, with none of the optimizer's artefacts: no hatching (no transforms, no sigmoid
to saturate), no ragged borders.

The channel objective is the mean over positions ``o`` of ``b + Σ_d W[d] · x[s·o + d − P]``,
so ``G[p] ∝ Σ W[d]`` over the offsets ``d`` that some window lays on pixel ``p``:

- **Inside**, a pixel seen by the whole kernel gets the sum of the taps congruent to it
  modulo the stride ``s``. At ``s = 1`` that is the whole kernel's sum, the same for
  every pixel: the optimum is a flat fill of one of the eight corner colours, each
  channel on or off by the sign of the kernel's sum for it (through the preprocessing's
  gain; caffe's BGR order included).
- **At a stride** ``s > 1`` (EfficientNet's stem, ``s = 2``) even and odd rows meet
  different taps, and the optimum of the tile's own mean is a lattice of period ``s``,
  an aliasing pattern that a one-pixel shift turns into its opposite. The gallery asks
  every tile to survive such shifts (its jitter), so the objective here is the filter's
  response wherever its window is placed: averaged over the ``s²`` phases of the stride,
  which sums every tap again and gives the same flat fill as at ``s = 1``.
- **At the borders**, zero padding means a pixel within the kernel's reach of the edge
  is seen by only part of the kernel, so the optimum of the tile's own mean differs
  there, in a band up to ``k − 1`` pixels wide, by the sign of a partial sum: a frame
  (an edge against the padding) that belongs to the tile's edge, not to the filter, and
  that an edge-detecting filter rewards. So ``G`` is taken inside a canvas wider by a
  margin on every side: the optimum of an unbounded image, the filter's mean response
  per unit area. Over an image that repeats the tile, that response is
  the layer's response to the tile's mean colour, ``b + Σ_k K_k · f_k(mean x)`` with
  ``K`` the kernel's sums and ``f`` the affine preprocessing, which the fill maximizes
  by construction.

The neuron objective reads one window at the map's centre, inside the tile: its optimum
is the window of the kernel's signs on grey, read from the same canvas. Negating an
objective (the negative variant) negates ``G``.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from ..model import circuits, grad, graph, preprocess as prep

# Variants whose score is linear in the filter's map: their optimum is bang-bang. The
# diversity variant adds a Gram-matrix penalty, which is not, so it is still optimized.
VARIANTS = ("channel", "negative", "neuron")
MEANS = ("channel", "negative")  # means over positions: a flat fill
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


def maximize(objective, layer, size: int, indices, flat: bool) -> np.ndarray:
    """uint8 ``(n, size, size, 3)``: the exact maximizer of ``objective(x, indices) -> (n,)``
    over images ``x`` in ``[0, 1]``, an affine function of ``x``; ``flat`` averages a mean
    objective over the stride's phases (see the module's text)."""
    pad = margin(layer)
    side = size + 2 * pad
    x = ops.convert_to_tensor(np.full((len(indices), side, side, 3), 0.5, "float32"))
    idx = ops.convert_to_tensor(np.asarray(indices, dtype="int32"))
    _, g = grad.value_and_grad(lambda x, idx: (ops.sum(objective(x, idx)), 0.0))(x, idx)
    g = np.array(ops.convert_to_numpy(g), dtype="float64")
    g[silent(layer, indices)] = 0.0
    if flat:  # one stride-sized block holds every phase once
        sy, sx = (int(s) for s in layer.strides)
        return np.broadcast_to(bang_bang(g[:, pad:pad + sy, pad:pad + sx].sum(axis=(1, 2), keepdims=True)),
                               (len(indices), size, size, 3)).copy()
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


def applies(model, layer: str, preprocess, variant: str) -> bool:
    """Whether ``variant`` images of ``layer`` are made exactly: the variant's score is
    linear in the map, the layer is linear in the pixels, and so is the preprocessing
    (a named convention; a callable's linearity is not known)."""
    affine = prep.resolve(preprocess) in prep.NAMES.values()
    return variant in VARIANTS and affine and graph.linear_in_pixels(model, layer)
