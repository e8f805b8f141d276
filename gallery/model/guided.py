"""Guided backpropagation's rectifiers, swapped into a model while a function traces.

Guided backprop (Springenberg et al., ICLR-W 2015) changes one thing: the backward rule
of every ReLU becomes ``dy · [x > 0] · [dy > 0]`` (:func:`grad.guided_relu`). The rule is
defined for rectifiers, so a model is used only when each of its nonlinear activations is
one: ``relu``, or a ReLU capped at a maximum (``relu6``, ``ReLU(max_value=6)`` as in
MobileNet and EfficientNet-Lite, whose gate is ``[0 < x < 6]``). A model with any other
activation (swish in EfficientNet B0–B7, GELU, sigmoid gates, leaky ReLU, …) is refused
with their names, rather than mixing rules. The final softmax is not counted: the class
score is taken before it. Activations inside custom layers cannot be seen, and keep
their own rule.

The user's model is not changed: :func:`guided_relus` swaps the rectifiers' activation
(or a ReLU layer's ``call``) for a switch, and restores them when it exits. The switch
applies the guided rule only in the thread that entered, so another thread tracing the
same model meanwhile (the renderers compile in threads) still gets plain ReLUs. Enter it
*inside* the function that is compiled: a trace then records the guided rule, and every
later call of the compiled function keeps it.
"""

from __future__ import annotations

from contextlib import contextmanager

import keras

from ..errors import GalleryError
from . import grad, graph
from .swap import Swap

RECTIFIERS = {"relu": None, "relu6": 6.0}  # activation functions by name → their cap
OTHER_LAYERS = {keras.layers.LeakyReLU: "leaky_relu", keras.layers.PReLU: "prelu", keras.layers.ELU: "elu",
                keras.layers.Softmax: "softmax"}


def _kind(layer) -> tuple[str | None, float | None]:
    """``("relu", cap)`` for a rectifier, ``(name, None)`` for another activation, ``(None, None)`` for none."""
    if isinstance(layer, keras.layers.ReLU):
        if float(layer.negative_slope) == 0 and float(layer.threshold) == 0:
            return "relu", None if layer.max_value is None else float(layer.max_value)
        return "leaky or thresholded ReLU", None
    for cls, name in OTHER_LAYERS.items():
        if isinstance(layer, cls):
            return name, None
    fn = getattr(layer, "activation", None)
    if not callable(fn):
        return None, None
    name = getattr(fn, "__name__", type(fn).__name__)
    if name == "linear":
        return None, None
    return ("relu", RECTIFIERS[name]) if name in RECTIFIERS else (name, None)


def census(model: keras.Model) -> tuple[list[tuple], dict[str, list[str]]]:
    """``(rectifiers, others)``: ``[(layer, cap)]`` for every rectifier, and the layers of
    every other activation, ``{activation: [qualified layer names]}``."""
    final = graph.final_layer(model)
    rectifiers, others = [], {}
    for name, layer in graph.walk(model):
        kind, cap = _kind(layer)
        if kind is None or (layer is final and kind == "softmax"):
            continue
        if kind == "relu":
            rectifiers.append((layer, cap))
        else:
            others.setdefault(kind, []).append(name)
    return rectifiers, others


def check(model: keras.Model) -> None:
    """Refuse, naming them, a model with activations that are not rectifiers."""
    _, others = census(model)
    if others:
        found = "; ".join(f"{kind} ({len(names)} layer{'s' * (len(names) > 1)}, such as {names[0]!r})"
                          for kind, names in others.items())
        raise GalleryError(
            f"guided Grad-CAM changes the backward rule of ReLUs (guided backpropagation), and model {graph.shown_name(model)!r} "
            f"has other activations: {found}; the rule is not defined for them, so it is refused rather than mixed. "
            "Use gradcam, saliency or smoothgrad (--cam-method)")


_swap = Swap()  # one guided trace at a time, so swaps never interleave


@contextmanager
def guided_relus(model: keras.Model):
    """Within this block, in this thread, the model's rectifiers backpropagate guided."""
    rectifiers, _ = census(model)

    def guided(cap):
        return lambda original: lambda x, *args, **kwargs: grad.guided_relu(x, cap)

    # A ReLU layer computes in its call(); other layers call their activation attribute.
    with _swap([(layer, "call" if isinstance(layer, keras.layers.ReLU) else "activation", guided(cap))
                for layer, cap in rectifiers]):
        yield len(rectifiers)
