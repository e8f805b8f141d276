"""Weight-based circuits: which filters of the previous conv layer feed a filter most.

For a conv kernel ``W`` of shape ``(kh, kw, c_in, c_out)``, input channel ``i`` feeds
filter ``f`` with strength ``‖W[:, :, i, f]‖₂`` (Olah et al., "Zoom In", Distill 2020,
read the same weights to find circuits). It costs nothing at build time and needs no
data. The previous conv layer is found by walking back through layers that keep
channels aligned (pooling, normalisation, activation, padding, dropout); a merge
(add, concatenate) ends the walk, since channels there no longer map one to one.
"""

from __future__ import annotations

import keras
import numpy as np

from . import graph

CHANNEL_PRESERVING = (
    keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.BatchNormalization,
    keras.layers.Activation, keras.layers.ReLU, keras.layers.ZeroPadding2D, keras.layers.Dropout,
    keras.layers.LayerNormalization,
)


def upstream_conv(model: keras.Model, name: str) -> str | None:
    """The conv layer whose channels are this layer's input channels, or ``None``."""
    path = graph.locate(model, name)
    prefix = graph.container_prefix(name)
    tensor = graph._io(path.layer)[0]
    while tensor is not None:
        history = getattr(tensor, "_keras_history", None)
        if not history:
            return None
        layer = history[0]
        if graph._is_conv(layer):
            return prefix + layer.name
        if not isinstance(layer, CHANNEL_PRESERVING) or len(graph.calls(layer)) != 1:
            return None
        tensor = graph._io(layer)[0]
    return None


def input_strengths(layer) -> np.ndarray | None:
    """``(c_out, c_in)``: how strongly each input channel feeds each filter."""
    if isinstance(layer, keras.layers.SeparableConv2D):
        pointwise = keras.ops.convert_to_numpy(layer.pointwise_kernel)[0, 0]  # (c_in·m, c_out)
        depthwise = keras.ops.convert_to_numpy(layer.depthwise_kernel)  # (kh, kw, c_in, m)
        m = depthwise.shape[-1]
        spatial = np.linalg.norm(depthwise.reshape(-1, depthwise.shape[2] * m), axis=0)  # per (c_in, m)
        combined = np.abs(pointwise) * spatial[:, None]
        return combined.reshape(depthwise.shape[2], m, -1).sum(axis=1).T
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = keras.ops.convert_to_numpy(layer.kernel)  # (kh, kw, c_in, m)
        c_in, m = kernel.shape[2], kernel.shape[3]
        norms = np.linalg.norm(kernel.reshape(-1, c_in * m), axis=0)
        strengths = np.zeros((c_in * m, c_in), "float32")
        strengths[np.arange(c_in * m), np.arange(c_in * m) // m] = norms
        return strengths
    if isinstance(layer, keras.layers.Conv2D) and getattr(layer, "groups", 1) == 1:
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        return np.sqrt((kernel.astype("float64") ** 2).sum(axis=(0, 1))).T.astype("float32")
    return None


def strongest_inputs(model: keras.Model, name: str, top: int = 8) -> tuple[str | None, dict[int, list]]:
    """``(upstream layer, {filter: [(input channel, strength), …]})``, strongest first."""
    source = upstream_conv(model, name)
    strengths = input_strengths(graph.locate(model, name).layer) if source else None
    if strengths is None:
        return None, {}
    order = np.argsort(-strengths, axis=1)[:, :top]
    return source, {
        f: [(int(i), round(float(strengths[f, i]), 4)) for i in order[f] if strengths[f, i] > 0]
        for f in range(strengths.shape[0])
    }


def pixel_kernels(model: keras.Model, name: str, preprocess: str) -> tuple[np.ndarray, float] | None:
    """``(cells, scale)`` for the model's first conv layer, whose filters are linear in the
    pixels: each filter's kernel as a ``(kh, kw, 3)`` uint8 image (grey for a 1-channel model), one pixel per weight,
    ``128 + 127.5·w/scale`` with ``scale`` the layer's largest absolute weight (grey is
    zero), in RGB order (caffe models see BGR, so their kernels are flipped back). ``None``
    for any other layer: deeper kernels weigh feature maps, not colours.
    """
    layer = graph.locate(model, name).layer
    first = graph.conv_layers(model)[:1] == [name]
    if not (first and type(layer) is keras.layers.Conv2D and getattr(layer, "groups", 1) == 1):
        return None
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype("float64")  # (kh, kw, c_in, n)
    if kernel.shape[2] == 1:  # a grey model's kernel: its one weight per tap, in grey
        kernel = np.repeat(kernel, 3, axis=2)
    if kernel.shape[2] != 3:
        return None
    if preprocess == "caffe":
        kernel = kernel[:, :, ::-1]
    scale = float(np.abs(kernel).max()) or 1.0
    cells = np.clip(np.round(128 + 127.5 * kernel / scale), 0, 255).astype("uint8")
    return np.moveaxis(cells, -1, 0), scale
