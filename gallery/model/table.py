"""The model page's layer table: one row per layer, nested models flattened."""

from __future__ import annotations

import keras

from . import graph

# Layers that act on each value alone, after the layer that made it: folded into that
# layer's row on the model page unless the reader asks for every layer.
MINOR = {"BatchNormalization": "BatchNorm", "LayerNormalization": "LayerNorm", "GroupNormalization": "GroupNorm",
         "Activation": None, "ReLU": "ReLU", "LeakyReLU": "LeakyReLU", "PReLU": "PReLU", "ELU": "ELU",
         "Dropout": "Dropout", "SpatialDropout2D": "Dropout", "GaussianNoise": "noise"}


def shape_text(shape) -> str:
    """``224×224×3``; a dimension that takes any size is ``?``."""
    return "×".join("?" if d is None else str(d) for d in shape)


def layer_table(model: keras.Model, size: tuple[int, int] | None = None) -> list[dict]:
    """One row per layer (nested models flattened): name, type, output shape, parameters.

    With ``size`` (h, w), shapes are those of an input that size (what a build feeds a
    model that takes any size). A normalisation, activation or dropout layer is ``minor``;
    the row before it lists it under ``then``, so the page can fold it away.
    """
    rows = []
    conv = set(graph.conv_layers(model))
    concrete = graph.output_shapes(model, size) if size else {}
    for name, layer in graph.walk(model):
        try:
            shape = concrete.get(name) or tuple(layer.output.shape)[1:]
        except (AttributeError, ValueError):
            shape = None
        kind = type(layer).__name__
        short = MINOR.get(kind) or graph.activation_name(layer) or kind
        row = {"name": name, "type": kind, "shape": shape_text(shape) if shape else "",
               "params": int(layer.count_params()) if layer.built else 0, "conv": name in conv,
               "minor": kind in MINOR, "then": []}
        owner = next((r for r in reversed(rows) if not r["minor"]), None) if row["minor"] else None
        if owner is not None:
            owner["then"].append(short)
        row["minor"] = owner is not None  # with no row before it to fold into, it keeps its own
        rows.append(row)
    return rows
