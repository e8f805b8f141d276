"""Reduced-precision copies of a model for the optimization loop.

Tensor cores run bf16 convolutions twice as fast as TF32 and many times faster than
plain float32 (an H100 SXM, dense: 989 bf16 TFLOP/s, 495 TF32, 67 float32), and
activation maximization only needs the *direction* of the input gradient, which bf16's
8-bit mantissa keeps. So on GPUs the
loop runs through a copy of the model under Keras's ``mixed_bfloat16`` policy (float32
weights, bf16 compute; Micikevicius et al., "Mixed precision training", ICLR 2018),
while the image parameters, the transforms, the target filter's own convolution and the
Adam moments stay float32. The activation recorded for each tile is measured through
the float32 model, so figures compare across precisions.
"""

from __future__ import annotations

import weakref

import keras

from ..errors import GalleryError
from . import graph

POLICIES = {"float32": None, "bfloat16": "mixed_bfloat16"}  # by config.PRECISIONS
_copies: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()


def compute_copy(model: keras.Model, precision: str) -> keras.Model:
    """``model`` itself for float32, else a copy with the same weights computing in ``precision``.

    The copy is a separate model, so the original keeps its policy for feature maps and
    CAMs. Nested models are copied layer by layer. Each model is copied once per
    precision, however many layers are rendered from it.
    """
    if precision not in POLICIES:
        raise GalleryError(f"precision must be one of {', '.join(POLICIES)}, got {precision!r}")
    policy = POLICIES[precision]
    if policy is None:
        return model
    made = _copies.setdefault(model, {})
    if precision not in made:
        made[precision] = _copy(model, precision, policy)
    return made[precision]


def settings_for(model: keras.Model, render, if_depthwise):
    """The render settings ``model`` takes: ``if_depthwise`` (those made without this CPU's
    bf16 units, where given) for a model with depthwise convolutions, which those units run
    slower than float32 (README, Presets); ``render`` otherwise. Builds and
    :func:`gallery.render.optimize.visualize_filters` both choose here."""
    return if_depthwise if if_depthwise is not None and graph.has_depthwise(model) else render


def _copy(model: keras.Model, precision: str, policy: str) -> keras.Model:
    def recast(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        try:
            return layer.__class__.from_config({**layer.get_config(), "dtype": policy})
        except Exception as exc:  # a custom layer whose config does not take a dtype
            raise GalleryError(
                f"cannot run layer {layer.name!r} ({type(layer).__name__}) in {precision}: {exc}; "
                "use --precision float32"
            ) from exc

    try:
        copy = keras.models.clone_model(model, clone_function=recast, recursive=True)
    except GalleryError:
        raise
    except Exception as exc:
        raise GalleryError(f"cannot copy model {graph.shown_name(model)!r} to {precision}: {exc}; use --precision float32") from exc
    copy.set_weights(model.get_weights())
    return copy
