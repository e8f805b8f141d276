"""What rendering a filter costs: FLOPs per image-step and memory per image, by layer.

Both come from the conv layers' output shapes, read once from one forward pass of a
blank image at a probe size (the canvas itself, up to ``MAX_PROBE`` pixels; beyond it,
spatial sizes are scaled). Convolutions dominate a CNN's arithmetic and activations, so
the rest of the layers are left out.

A step renders one image through the model truncated at the target layer's input, then
that image's own filter alone (one output channel of the layer), and back again for the
gradient with respect to the input: about twice the forward FLOPs (no weight gradients).
"""

from __future__ import annotations

import math

from keras import ops

from ..errors import GalleryError
from ..model import graph
from . import transforms

MAX_PROBE = 256
BYTES = 4  # float32 activations
# Tensors kept per conv output in a forward and input-gradient pass: the conv output,
# its activation, and a gradient of each.
LIVE_COPIES = 4


def _conv_flops(layer, height: int, width: int) -> float:
    """Forward multiply-adds ×2 of one conv layer producing an ``height × width`` map."""
    kernels = [getattr(layer, name) for name in ("depthwise_kernel", "pointwise_kernel", "kernel")
               if getattr(layer, name, None) is not None]
    return 2.0 * height * width * sum(math.prod(k.shape) for k in kernels)


class Costs:
    """Per-layer costs of a model; shapes are probed lazily, once per probe size."""

    def __init__(self, model):
        self.model = model
        self.names = graph.conv_layers(model)
        self._layers = {n: graph.locate(model, n).layer for n in self.names}
        self._upstream: dict[str, list[str]] = {}
        self._shapes: dict[int, dict[str, tuple[int, int, int]]] = {}

    def shapes(self, canvas: int) -> dict[str, tuple[float, float, int]]:
        """``{conv layer: (height, width, channels)}`` of its output for a ``canvas`` input."""
        probe = min(canvas, MAX_PROBE)
        if probe not in self._shapes:
            run = graph.output_fn(self.model, [graph.locate(self.model, n) for n in self.names])
            outputs = run(ops.zeros((1, probe, probe, self.model.inputs[0].shape[-1]), "float32"))
            self._shapes[probe] = {n: tuple(int(d) for d in o.shape[1:]) for n, o in zip(self.names, outputs)}
        scale = canvas / probe
        return {n: (h * scale, w * scale, c) for n, (h, w, c) in self._shapes[probe].items()}

    def upstream(self, layer: str) -> list[str]:
        if layer not in self._upstream:
            self._upstream[layer] = graph.upstream_convs(self.model, layer)
        return self._upstream[layer]

    def step_flops(self, layer: str, canvas: int) -> float:
        """FLOPs of one image-step on ``layer`` with a ``canvas``-pixel network input."""
        shapes = self.shapes(canvas)
        forward = sum(_conv_flops(self._layers[u], *shapes[u][:2]) for u in self.upstream(layer))
        h, w, channels = shapes[layer]
        forward += _conv_flops(self._layers[layer], h, w) / channels  # its own filter only
        return 2.0 * forward

    def forward_flops(self, canvas: int) -> float:
        """FLOPs of one image through every conv layer (a photo's forward pass)."""
        shapes = self.shapes(canvas)
        return sum(_conv_flops(self._layers[n], *shapes[n][:2]) for n in self.names)

    def channels(self, layer: str) -> int:
        """Channels of a layer's output (a CAM layer need not be a conv layer)."""
        if layer in self._layers:
            return self.shapes(MAX_PROBE)[layer][2]
        return int(graph.locate(self.model, layer).layer.output.shape[-1])

    def image_bytes(self, layer: str, canvas: int) -> float:
        """Activation memory one image needs in a step on ``layer`` (an estimate, see module)."""
        shapes = self.shapes(canvas)
        return LIVE_COPIES * BYTES * sum(h * w * c for h, w, c in (shapes[u] for u in self.upstream(layer)))


def network_side(settings, canvas: int) -> int:
    """The side of the image the network sees at a stage drawn at ``canvas`` pixels."""
    padding = transforms.pipeline(settings.transforms)[0]
    return canvas + 2 * round(padding * canvas / settings.size)


def fit_batch(costs: Costs, layers, settings, available: int | None) -> int:
    """The batch that fits in ``available`` bytes at the deepest of ``layers``.

    Refuses a tile size at which one image alone does not fit, before anything that size
    is allocated; lowers the batch (halving, as out-of-memory recovery does) otherwise.
    """
    if available is None:
        return settings.batch
    side = network_side(settings, settings.size)
    channels = int(costs.model.inputs[0].shape[-1])
    need, layer = max((costs.image_bytes(layer, side) + 16 * BYTES * side * side * channels, layer) for layer in layers)
    if need > available:
        most = int(settings.size * math.sqrt(available / need))
        raise GalleryError(
            f"--size {settings.size}: one image needs about {need / 2**30:.1f} GiB at {layer}, more than the "
            f"{available / 2**30:.1f} GiB available; use a --size of at most about {max(most, 16)}")
    batch = settings.batch
    while batch > 1 and batch * need > available:
        batch //= 2
    return batch


def total_flops(costs: Costs, settings, layer: str, images: int) -> float:
    """FLOPs of rendering ``images`` images of ``layer`` through the whole schedule."""
    from .schedule import stages

    return images * sum(n * costs.step_flops(layer, network_side(settings, canvas))
                        for canvas, n in stages(settings.steps, settings.size, settings.scales))


def describe(flops: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.1f} {unit}"
    return f"{flops:.0f} FLOP"

