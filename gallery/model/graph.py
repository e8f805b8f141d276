"""Where a conv layer sits in a model, and sub-models that reach it or leave from it.

Layers are named by their path through nested models: ``block5_conv3`` at the top
level, ``vgg16/block5_conv3`` inside a wrapped backbone. Every function here works for
functional and sequential models and for backbones nested to any depth.
"""

from __future__ import annotations

import difflib
import weakref
from dataclasses import dataclass
from typing import Callable, Iterator

import keras

from ..errors import GalleryError

CONV_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)

# Each loaded model's name as the site shows it (its file's stem, its application's name):
# a model saved without a name of its own is Keras's 'functional', which names nothing.
_TITLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def entitle(model: keras.Model, title: str) -> None:
    """Name ``model`` as the site does, in every message about it (:func:`shown_name`)."""
    _TITLES[model] = title


def shown_name(model: keras.Model) -> str:
    """The model's name in messages: the site's (:func:`entitle`), else its Keras name."""
    return _TITLES.get(model, model.name)


def _is_container(layer) -> bool:
    return isinstance(layer, keras.Model)


def _is_conv(layer) -> bool:
    # Conv2DTranspose subclasses Conv2D but upsamples; its "filters" are not detectors.
    return isinstance(layer, CONV_TYPES) and not isinstance(layer, keras.layers.Conv2DTranspose)


def walk(model: keras.Model, containers: bool = False) -> Iterator[tuple[str, keras.layers.Layer]]:
    """``(qualified name, layer)`` of every layer in graph order, descending into nested
    models: the one walk every analysis of a model's layers goes through. A nested model
    itself is yielded (just before its layers) only with ``containers``."""
    def descend(container, prefix):
        for layer in container.layers:
            name = prefix + layer.name
            if not _is_container(layer):
                yield name, layer
                continue
            if containers:
                yield name, layer
            yield from descend(layer, name + "/")

    return descend(model, "")



def has_depthwise(model) -> bool:
    """Whether any layer, nested models included, convolves each channel alone
    (DepthwiseConv2D, or the depthwise half of a SeparableConv2D)."""
    return any(isinstance(layer, (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D))
               for _, layer in walk(model))


def conv_layers(model: keras.Model) -> list[str]:
    """Qualified names of every 2-D conv layer, in graph order, nested models included."""
    return [name for name, layer in walk(model) if _is_conv(layer)]


def all_layer_names(model: keras.Model) -> list[str]:
    """The name of every layer, nested models' layers included (each name alone)."""
    return [layer.name for _, layer in walk(model, containers=True)]


@dataclass(frozen=True)
class LayerPath:
    """The chain of (container, layer) pairs from the outer model down to a layer."""

    steps: tuple[tuple[keras.Model, keras.layers.Layer], ...]

    @property
    def layer(self) -> keras.layers.Layer:
        return self.steps[-1][1]

    @property
    def name(self) -> str:
        return "/".join(layer.name for _, layer in self.steps)


def locate(model: keras.Model, name: str) -> LayerPath:
    """Find a layer by qualified name; unknown names list what exists."""
    steps = []
    container = model
    parts = name.split("/")
    for depth, part in enumerate(parts):
        found = next((layer for layer in container.layers if layer.name == part), None)
        if found is None or (depth < len(parts) - 1 and not _is_container(found)):
            available = conv_layers(model)
            close = close_names(name, available)
            raise GalleryError(
                f"layer {name!r} is not in model {shown_name(model)!r}; "
                + (f"did you mean {' or '.join(map(repr, close))}? " if close else "")
                + f"its conv layers are: {_shown(available)}"
            )
        steps.append((container, found))
        container = found
    return LayerPath(tuple(steps))


def locate_conv(model: keras.Model, name: str) -> LayerPath:
    """Like :func:`locate`, for a layer whose filters can be rendered: a 2-D conv layer."""
    path = locate(model, name)
    if not _is_conv(path.layer):
        raise GalleryError(f"layer {name!r} is a {type(path.layer).__name__}, not a 2-D conv layer, so it has no "
                           f"filters to render; conv layers of {shown_name(model)!r}: {_shown(conv_layers(model))}")
    return path


def _shown(names: list[str]) -> str:
    """The conv layers by name; of a long list the first, and how to see them all."""
    if len(names) <= 20:
        return ", ".join(names)
    return ", ".join(names[:12]) + f" … ({len(names)} in all; --list-layers prints every one)"


def close_names(name: str, names: list[str]) -> list[str]:
    """The names a misspelling most likely meant: the closest, and those as close, never a
    merely similar one (``block1_conv`` means ``block1_conv1`` or ``block1_conv2``, not
    ``block5_conv3``, though that one shares all but two of its letters)."""
    scored = sorted(((difflib.SequenceMatcher(None, name, n).ratio(), n) for n in names), key=lambda rn: (-rn[0], rn[1]))
    if not scored or scored[0][0] < 0.75:
        return []
    best = scored[0][0]
    return [n for ratio, n in scored if ratio >= best - 0.03][:4]


def check_conv_names(model: keras.Model, names, title: str) -> None:
    """Refuse, in one line, every name of ``names`` that is not a conv layer of ``model``
    (named ``title``, as its pages name it), each with the names it most likely meant."""
    available = conv_layers(model)
    problems = []
    for name in names:
        try:
            path = locate(model, name)
        except GalleryError:
            close = close_names(name, available)
            problems.append(repr(name) + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
            continue
        if not _is_conv(path.layer):
            problems.append(f"{name!r} (a {type(path.layer).__name__}, not a 2-D conv layer, so it has no filters)")
    if problems:
        raise GalleryError(f"--layers names what {title} has no conv layer for: {', '.join(problems)}; "
                           f"its conv layers are: {_shown(available)}")


def calls(layer) -> list:
    """The layer's call nodes in its model's own graph (not those of our subgraphs)."""
    return [n for n in getattr(layer, "_inbound_nodes", []) if not getattr(n, CLONED, False)]


def _io(layer) -> tuple:
    """The symbolic input and output of a layer as its container's graph sees them.

    A nested model's own ``.input`` is its inner Input, not the tensor its parent feeds
    it, so the parent's call node is asked instead.
    """
    nodes = calls(layer)
    if len(nodes) > 1:
        raise GalleryError(
            f"layer {layer.name!r} is called {len(nodes)} times in its model; shared layers "
            "are not supported"
        )
    if nodes:
        node = nodes[0]
        inputs = node.input_tensors
        return (inputs[0] if inputs else None), node.output_tensors[0]
    return layer.input, layer.output


def _graph_inputs(container):
    inputs = container.inputs
    if len(inputs) != 1:
        raise GalleryError(
            f"model {shown_name(container)!r} has {len(inputs)} inputs; only single-input models "
            "are supported"
        )
    return inputs[0]


def _runner(submodel: keras.Model) -> Callable:
    # ``call`` skips the fixed input-shape check of the outer Input, so filter images can
    # be rendered at any size through the fully convolutional part of the model.
    return lambda x: submodel.call(x)


CLONED = "_gallery_cloned"


def _subgraph(container, inputs, outputs, what: str) -> keras.Model:
    """A model from ``inputs`` to ``outputs``, tensors of ``container``'s graph.

    Keras builds a model that starts at an intermediate tensor by re-calling the layers
    after it, which appends call nodes to them. Those nodes are marked, so the layers
    still read as called once (:func:`_io`) and later analyses of the model still work.
    """
    before = {id(layer): len(layer._inbound_nodes) for layer in container.layers}
    try:
        return keras.Model(inputs, outputs)
    except Exception as exc:
        raise GalleryError(f"cannot isolate {what}: {exc}") from exc
    finally:
        for layer in container.layers:
            for node in layer._inbound_nodes[before.get(id(layer), 0):]:
                setattr(node, CLONED, True)


def _upstream(tensor) -> list:
    """Every layer of ``tensor``'s graph that runs before it is available."""
    seen, found, stack = set(), [], [tensor]
    while stack:
        history = getattr(stack.pop(), "_keras_history", None)
        if not history:
            continue
        operation, node_index, _ = history
        node = operation._inbound_nodes[node_index]
        if id(node) in seen:
            continue
        seen.add(id(node))
        found.append(operation)
        stack.extend(node.input_tensors)
    return found


def upstream_convs(model: keras.Model, name: str) -> list[str]:
    """Qualified names of the conv layers that run before ``name`` receives its input:
    what rendering one of its filters costs, besides that filter's own convolution."""
    found, prefix = [], ""
    for container, layer in locate(model, name).steps:
        for operation in _upstream(_io(layer)[0]):
            if _is_container(operation):
                found += [f"{prefix}{operation.name}/{inner}" for inner in conv_layers(operation)]
            elif _is_conv(operation):
                found.append(prefix + operation.name)
        prefix += layer.name + "/"
    order = {n: i for i, n in enumerate(conv_layers(model))}
    return sorted(set(found), key=order.__getitem__)


# Layers that map each pixel's channels affinely and alone (at inference): what may stand
# between the model's input and a conv layer that is still linear in the pixels.
PIXEL_AFFINE = (keras.layers.InputLayer, keras.layers.Rescaling, keras.layers.Normalization,
                keras.layers.BatchNormalization, keras.layers.ZeroPadding2D, keras.layers.Identity,
                keras.layers.Dropout, keras.layers.SpatialDropout2D)


def linear_in_pixels(model: keras.Model, name: str) -> bool:
    """True when conv layer ``name`` receives an affine function of the model's input,
    pixel by pixel: only :data:`PIXEL_AFFINE` layers stand between them, in every nested
    model on the way. Its pre-activation is then affine in the pixels (zero padding
    included), which :mod:`gallery.render.exact` maximizes in closed form."""
    path = locate(model, name)
    if not _is_conv(path.layer):
        return False
    for _, layer in path.steps:
        history = getattr(_io(layer)[0], "_keras_history", None)
        while history and not isinstance(history[0], keras.layers.InputLayer):  # up to the container's input
            if not isinstance(history[0], PIXEL_AFFINE) or len(calls(history[0])) != 1:
                return False
            history = getattr(_io(history[0])[0], "_keras_history", None)
    return True


def input_fn(model: keras.Model, path: LayerPath) -> Callable:
    """``x → the tensor the conv layer receives``, for a batch of model inputs ``x``."""
    runners = []
    for container, layer in path.steps:
        sub = _subgraph(container, _graph_inputs(container), _io(layer)[0], f"the input of {layer.name!r}")
        runners.append(_runner(sub))

    def run(x):
        for step in runners:
            x = step(x)
        return x

    return run


def output_fn(model: keras.Model, paths: list[LayerPath]) -> Callable:
    """``x → [output of each layer]`` for model inputs ``x``, top-level layers in one pass."""
    top = [p for p in paths if len(p.steps) == 1]
    multi = _subgraph(model, _graph_inputs(model), [_io(p.layer)[1] for p in top], "conv outputs") if top else None
    nested = {p.name: input_fn(model, p) for p in paths if len(p.steps) > 1}

    def run(x):
        results = {}
        if multi is not None:
            outs = multi.call(x)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            results.update({p.name: o for p, o in zip(top, outs)})
        for p in paths:
            if p.name in nested:
                results[p.name] = p.layer(nested[p.name](x))
        return [results[p.name] for p in paths]

    return run


def head_fn(model: keras.Model, path: LayerPath) -> Callable:
    """``conv output → pre-softmax class scores``: the rest of the model after the layer.

    Grad-CAM (Selvaraju et al., 2017) differentiates the score *before* the softmax. When
    the model ends in a softmax, the last layer is replaced by its linear part.
    """
    end, linear_tail = _logits_end(model)
    runners = []
    for depth in range(len(path.steps) - 1, -1, -1):
        container, layer = path.steps[depth]
        target = end if depth == 0 else container.outputs[0]
        start = _io(layer)[1]
        if start is target:  # the layer is its container's output: nothing left to run
            continue
        sub = _subgraph(
            container, start, target,
            f"the part of {container.name!r} after {layer.name!r} (it must depend on that layer alone)",
        )
        runners.append(_runner(sub))

    def run(a):
        for step in runners:
            a = step(a)
        return linear_tail(a) if linear_tail is not None else a

    return run


def _logits_end(model: keras.Model) -> tuple:
    """``(tensor, tail)``: where the pre-softmax scores are computed from, and the linear
    part of a final softmax layer (``None`` when the model's output is already the scores)."""
    if len(model.outputs) != 1:
        raise GalleryError(f"model {shown_name(model)!r} has {len(model.outputs)} outputs; Grad-CAM needs one")
    final = final_layer(model)
    if final is not None and _is_softmax(final):
        return _io(final)[0], _linear_part(final)
    return model.outputs[0], None


def logits_fn(model: keras.Model) -> Callable:
    """``x → pre-softmax class scores`` for model inputs ``x``: the whole model, its final
    softmax replaced by its linear part (see :func:`head_fn`)."""
    end, linear_tail = _logits_end(model)
    run = _runner(model if end is model.outputs[0] else
                  _subgraph(model, _graph_inputs(model), end, "the model before its softmax"))
    return run if linear_tail is None else (lambda x: linear_tail(run(x)))


def final_layer(model):
    """The layer that computes the model's (first) output, or ``None``."""
    out = model.outputs[0]
    history = getattr(out, "_keras_history", None)
    return history[0] if history else None


def _is_softmax(layer) -> bool:
    return isinstance(layer, keras.layers.Softmax) or activation_name(layer) == "softmax"


def _linear_part(layer) -> Callable | None:
    """The layer without its softmax: identity for Softmax/Activation, the affine map for Dense."""
    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)):
        return lambda h: h
    if isinstance(layer, keras.layers.Dense):
        from keras import ops

        def dense(h):
            z = ops.matmul(h, layer.kernel)
            return z + layer.bias if layer.use_bias else z

        return dense
    raise GalleryError(
        f"the final layer {layer.name!r} ({type(layer).__name__}) applies softmax in a way "
        "Grad-CAM cannot undo; the logits are needed"
    )


POINTWISE = (keras.layers.BatchNormalization, keras.layers.Activation, keras.layers.ReLU)


def container_prefix(name: str) -> str:
    """``"backbone/"`` for ``"backbone/conv1"``: what names a layer's siblings; ``""`` at the top."""
    return name.rsplit("/", 1)[0] + "/" if "/" in name else ""


def _consumers(container, tensor) -> list:
    """The layers of ``container`` called on ``tensor``, as any of their inputs (an Add's
    second input reads it as surely as its first)."""
    return [layer for layer in container.layers
            if any(any(t is tensor for t in node.input_tensors) for node in calls(layer))]


def sole_consumer(container, layer):
    """The one layer of ``container`` that reads ``layer``'s output, or ``None`` where
    several do, none does, or the output is also one of the container's outputs."""
    output = _io(layer)[1]
    if any(output is out for out in container.outputs):
        return None
    readers = _consumers(container, output)
    return readers[0] if len(readers) == 1 and len(calls(readers[0])) == 1 else None


def containers(model: keras.Model) -> list:
    """The model and every model nested in it."""
    return [model, *(layer for _, layer in walk(model, containers=True) if _is_container(layer))]


def activation_name(layer) -> str | None:
    """The name of the activation a layer applies itself (``"relu"``, ``"linear"``), or
    ``None`` for a layer with no activation attribute."""
    return getattr(getattr(layer, "activation", None), "__name__", None)


def follow_pointwise(model: keras.Model, name: str) -> str:
    """Walk from a layer through the normalisation/activation layers that consume it alone."""
    path = locate(model, name)
    container = path.steps[-1][0]
    prefix = container_prefix(name)
    current = path.layer
    while True:
        consumers = _consumers(container, _io(current)[1])
        if len(consumers) != 1 or not isinstance(consumers[0], POINTWISE):
            return prefix + current.name
        current = consumers[0]


def conv_source(model: keras.Model, name: str) -> str | None:
    """The conv layer whose channels ``name`` carries: itself, or the conv before a
    chain of normalisation and activation layers (``top_activation`` → ``top_conv``)."""
    path = locate(model, name)
    prefix = container_prefix(name)
    layer = path.layer
    while not _is_conv(layer):
        if not isinstance(layer, POINTWISE):
            return None
        history = getattr(_io(layer)[0], "_keras_history", None)
        if not history:
            return None
        layer = history[0]
    return prefix + layer.name


PASSTHROUGH = (keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.Identity)


def gap_dense_kernel(model: keras.Model, name: str):
    """The dense kernel ``(k, classes)`` when ``name`` reaches the classes through global
    average pooling and one dense layer alone (dropout aside), as CAM requires (Zhou et al.,
    CVPR 2016); otherwise a :class:`GalleryError` that names what is in the way."""
    path = locate(model, name)
    chain, depth, tensor = [], len(path.steps) - 1, _io(path.layer)[1]
    while len(chain) < 8:
        container = path.steps[depth][0]
        if depth > 0 and tensor is container.outputs[0]:  # leave a nested backbone by its output
            depth, tensor = depth - 1, _io(path.steps[depth - 1][1])[1]
            continue
        consumers = _consumers(container, tensor)
        if len(consumers) != 1:
            break
        if not isinstance(consumers[0], PASSTHROUGH):
            chain.append(consumers[0])
        tensor = _io(consumers[0])[1]
        if depth == 0 and tensor is model.outputs[0]:
            break
    kinds = [type(layer).__name__ for layer in chain]
    dense = chain[1] if len(chain) > 1 else None
    softmax_after = len(chain) == 3 and isinstance(chain[2], (keras.layers.Softmax, keras.layers.Activation)) \
        and _is_softmax(chain[2])
    if (tensor is model.outputs[0] and kinds[:1] == ["GlobalAveragePooling2D"]
            and isinstance(dense, keras.layers.Dense) and (len(chain) == 2 or softmax_after)
            and activation_name(dense) in ("linear", "softmax")):
        return dense.kernel
    after = " → ".join(kinds) or "nothing"
    raise GalleryError(f"CAM needs layer {name!r} to reach the classes through global average pooling and one dense "
                       f"layer, and after it come: {after}; use Grad-CAM (--cam-method gradcam), which needs no such head")


def has_classifier(model: keras.Model) -> bool:
    """True when the model ends in a vector of class scores (rank-2 output)."""
    return len(model.outputs) == 1 and len(model.outputs[0].shape) == 2 and (model.outputs[0].shape[-1] or 0) > 1


def _probe(model: keras.Model, size: tuple[int, int]):
    return keras.KerasTensor((1, *size, _graph_inputs(model).shape[-1]))


def output_shape(model: keras.Model, size: tuple[int, int]) -> tuple:
    """The model's output shape (batch dimension dropped) for inputs of ``size`` (h, w)."""
    spec = model.compute_output_spec(_probe(model, size))
    return tuple((spec[0] if isinstance(spec, (list, tuple)) else spec).shape[1:])


def output_shapes(model: keras.Model, size: tuple[int, int]) -> dict[str, tuple]:
    """Each layer's output shape (batch dimension dropped) for inputs of ``size`` (h, w),
    by qualified name, nested models included: what a model that takes any size computes
    at the size a build feeds it. Traced symbolically; nothing runs."""
    shapes: dict[str, tuple] = {}

    def walk(container, input_shape, prefix):
        for layer in container.layers:
            if isinstance(layer, keras.layers.InputLayer):
                shapes[prefix + layer.name] = tuple(input_shape[1:])
        layers = [layer for layer in container.layers if calls(layer) and not isinstance(layer, keras.layers.InputLayer)]
        if not layers:
            return
        outputs = [_io(layer)[1] for layer in layers]
        sub = _subgraph(container, _graph_inputs(container), outputs, f"the layers of {container.name!r}")
        specs = sub.compute_output_spec(keras.KerasTensor(input_shape))
        specs = specs if isinstance(specs, (list, tuple)) else [specs]
        known = {id(_graph_inputs(container)): input_shape, **{id(t): s.shape for t, s in zip(outputs, specs)}}
        for layer, spec in zip(layers, specs):
            shapes[prefix + layer.name] = tuple(spec.shape[1:])
            if _is_container(layer):
                walk(layer, known[id(_io(layer)[0])], f"{prefix}{layer.name}/")

    walk(model, _probe(model, size).shape, "")
    return shapes
