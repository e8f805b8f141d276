"""Batched activation maximization (Erhan et al. 2009; Olah et al., Distill 2017).

Pure computation, no I/O: given a model, a conv layer and filter indices, return one
8-bit image per filter and the activation that image reaches. Each image optimizes
its own filter, so B filters share one forward and backward pass through the model
truncated at the target layer.
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, NamedTuple, Sequence

import keras
import numpy as np
from keras import ops

from ..channels import Channels
from ..config import RenderSettings
from ..errors import GalleryError
from ..model import backward, folding, grad, graph, precision, preprocess as prep
from . import exact, kinds, params, transforms
from .objectives import LINEAR_VARIANTS, VARIANTS, channel, own_preactivation
from .schedule import CHUNK, spans, stages

ADAM_B2, ADAM_EPS = 0.999, 1e-8  # beta1 is the settings' momentum


def filter_rng(seed: int, layer: str, index: int, copy: int = 0) -> np.random.Generator:
    """A generator that depends on the seed, the layer, the filter and the copy, nothing else."""
    key = [seed, zlib.crc32(layer.encode("utf-8")), index] + ([copy] if copy else [])
    return np.random.default_rng(key)


class FilterRenderer:
    """Renders filters of one layer; compiled steps are reused across batches."""

    def __init__(self, model: keras.Model, layer: str, settings: RenderSettings, preprocess=None,
                 variant: str = "channel", channels: Channels | None = None):
        self.path = graph.locate_conv(model, layer)
        # The images' channels: the model's, shown as the build names them (default: its first three as RGB).
        self.image_channels = channels or Channels.of(int(model.inputs[0].shape[-1]))
        self.layer_name = self.path.name
        # A layer linear in the pixels maximizes rectified means: its plain mean is degenerate.
        self.linear = exact.linear(model, layer, preprocess)
        self.settings = settings = settings.for_layer(self.linear, bool(kinds.coarse(model, [self.layer_name])),
                                                      graph.has_depthwise(model))
        self.variant = (LINEAR_VARIANTS if self.linear else VARIANTS)[variant]
        self.exact = self.linear and variant in exact.VARIANTS  # solved in closed form, not optimized
        self.to_input = graph.input_fn(model, self.path)
        # The loop may run through a reduced-precision copy; scores always use ``model``.
        fast = self._loop_model = precision.compute_copy(folding.folded(model), settings.precision)
        self._loop_input = self.to_input if fast is model else graph.input_fn(fast, graph.locate(fast, layer))
        self.preprocess = prep.resolve(preprocess)
        self.padding, self.samplers = transforms.pipeline(settings.transforms)
        self._init, self._image_fn = params.parameterize(
            settings.parameterization, settings.size, settings.decay, settings.contrast, self.image_channels)
        # MACO's transparency map: the |gradient| with respect to the image, gathered over the steps.
        self.transparent = settings.parameterization in params.TRANSPARENT and not self.exact
        self.conv = self.path.layer
        self.channels = _channel_count(self.conv)
        self._loops: dict = {}
        # Scored op by op: those small programs are shared by every renderer, so a build
        # compiles them once. :meth:`prepare` compiles it whole instead, off the device's path.
        self._score_ops = grad.no_grad(self._summary)
        self._score = self._score_ops

    @property
    def filters_per_batch(self) -> int:
        """Filters per optimization: a batch holds every copy of each of its filters."""
        return max(1, self.settings.batch // self.variant.copies)

    def _padding_at(self, canvas: int) -> int:
        """The grey margin at ``canvas`` pixels: the tile's margin, scaled with the image."""
        return round(self.padding * canvas / self.settings.size)

    def _preactivation(self, images, indices, matrices=None, canvas=None, to_input=None):
        """``(z, features)``: each image's own filter map and the layer's input (float32)."""
        padding = self.padding if canvas is None else self._padding_at(canvas)
        x = transforms.step_transform(padding, matrices, canvas)(images)
        features = ops.cast((to_input or self.to_input)(self.preprocess(x * 255.0)), "float32")
        return own_preactivation(self.conv, features, indices), features

    def _summary(self, images, indices):
        """``(batch, 2)``: each image's mean pre-activation, and its peak: the strongest unit
        of the layer's own output (its activation applied), the statistic photos are ranked by
        (:func:`gallery.photos.examples.peaks`)."""
        z = self._preactivation(images, indices)[0]
        return ops.stack([channel(z), ops.max(self.conv.activation(z), axis=(1, 2))], axis=1)

    def _objective(self, x, indices, matrices, canvas):
        """One score per image of the batch ``x`` as the loop sees it: what the steps raise."""
        return self.variant.score(*self._preactivation(x, indices, matrices, canvas, self._loop_input))

    def _loop(self, canvas: int, length: int):
        """A compiled run of ``length`` Adam steps (Kingma & Ba, 2015) at ``canvas`` pixels."""
        if (canvas, length) in self._loops:
            return self._loops[(canvas, length)]
        resize = canvas if canvas != self.settings.size else None
        lr, b1 = self.settings.learning_rate, self.settings.momentum

        def image_loss(x, targets, matrices):
            with backward.input_gradients(self._loop_model):  # traced here, so the loop keeps the rule
                value = self._objective(x, targets, matrices, resize)
            return -ops.sum(value), value

        value_and_grad = grad.value_and_grad(lambda p, *args: image_loss(self._image_fn(p), *args))
        image_grad = grad.value_and_grad(image_loss)
        # The parameters' gradient is the image's carried back through image_fn: d/dp Σ image_fn(p)·g.
        pull_back = grad.value_and_grad(lambda p, g: (ops.sum(self._image_fn(p) * g), None))

        def gradients(p, indices, mats, state):
            """The loss's gradient with respect to ``p``, and the state's accumulated map
            (``()`` unless :attr:`transparent`) with this step's ``|∂objective/∂image|`` added."""
            if not self.transparent:
                return value_and_grad(p, indices, mats)[1], ()
            _, g_image = image_grad(self._image_fn(p), indices, mats)
            return pull_back(p, g_image)[1], (state[0] + ops.sum(ops.abs(g_image), axis=-1),)

        def run(p, m, v, t0, indices, matrices, *gathered):
            def step(i, state):
                p, m, v = state[:3]
                mats = None if matrices is None else ops.take(matrices, i, axis=0)
                g, gathered = gradients(p, indices, mats, state[3:])
                t = t0 + ops.cast(i, "float32") + 1.0
                # Elementwise moments, so each image steps independently of its batch.
                m = b1 * m + (1 - b1) * g
                v = ADAM_B2 * v + (1 - ADAM_B2) * g * g
                m_hat = m / (1 - b1 ** t)
                v_hat = v / (1 - ADAM_B2 ** t)
                return (p - lr * m_hat / (ops.sqrt(v_hat) + ADAM_EPS), m, v, *gathered)

            return ops.fori_loop(0, length, step, (p, m, v, *gathered))

        self._loops[(canvas, length)] = grad.compile(run)
        return self._loops[(canvas, length)]

    def prepare(self, batch_sizes: Iterable[int]) -> None:
        """Compile, without running, every program that rendering batches of these many
        filters will call (see :func:`grad.warm`; JAX only, elsewhere a no-op).

        Safe in a thread while another renderer runs: this one's state is only its own.
        """
        if not grad.compiles_ahead():
            return
        s = self.settings
        if self._score is self._score_ops:
            self._score = grad.compile(self._score_ops)
        param_shape = self._init(np.random.default_rng(0)).shape
        for n in sorted(set(batch_sizes)):
            images = n * self.variant.copies
            p = Shape((images, *param_shape), "float32")
            idx = Shape((images,), "int32")
            gathered = (Shape((images, s.size, s.size), "float32"),) if self.transparent else ()
            for canvas, count in [] if self.exact else stages(s.steps, s.size, s.scales):  # no loop to run
                for length in {length for _, length in spans(count, CHUNK)}:
                    mats = Shape((length, images, 3, 3), "float32") if self.samplers else None
                    grad.warm(self._loop(canvas, length), p, p, p, Shape((), "float32"), idx, mats, *gathered)
            grad.warm(self._score, Shape((images, s.size, s.size, self.image_channels.count), "float32"), idx)

    def render(self, indices: Sequence[int], on_step: Callable | None = None, snapshots: Sequence[int] = (),
               on_snapshot: Callable | None = None):
        """``(uint8 images (n·copies, size, size, channels), activations (n·copies,))``.

        Images come filter by filter, ``self.variant.copies`` per filter. The activation
        is each saved 8-bit image's mean pre-activation, untransformed: what the tile on
        the page really achieves. After each step count in ``snapshots`` (0, the start, or
        ends of chunks, see :func:`~gallery.render.schedule.snapshot_steps`), ``on_snapshot(step, canvas, images)``
        receives the images as they stand, 8-bit and full size, whatever canvas the network
        sees them at.
        """
        images = self.images(indices, on_step, snapshots, on_snapshot)
        return images, self.activation(images, [int(i) for i in indices for _ in range(self.variant.copies)])

    def images(self, indices: Sequence[int], on_step: Callable | None = None, snapshots: Sequence[int] = (),
               on_snapshot: Callable | None = None) -> np.ndarray:
        """:meth:`render`'s images alone, unscored: for a caller that scores them its own way
        (:meth:`scores`), so they are not run through the network twice."""
        return self.images_and_transparency(indices, on_step, snapshots, on_snapshot)[0]

    def images_and_transparency(self, indices: Sequence[int], on_step: Callable | None = None,
                                snapshots: Sequence[int] = (), on_snapshot: Callable | None = None):
        """``(images, transparency)``: :meth:`images`, and where the parameterization is MACO
        (:attr:`transparent`) its transparency maps, float32 ``(n·copies, size, size)``: each
        pixel's ``Σ_steps Σ_channels |∂objective/∂x|`` (Fel et al., NeurIPS 2023, §3), where the
        network looked while the image formed. ``None`` for other parameterizations."""
        s = self.settings
        indices = [int(i) for i in indices]
        for i in indices:
            if not 0 <= i < self.channels:
                raise IndexError(f"filter {i} out of range for {self.layer_name} ({self.channels} filters)")
        copies = self.variant.copies
        images_of = [i for i in indices for _ in range(copies)]
        if self.exact:
            score = lambda x, idx: self.variant.score(*self._preactivation(x, idx))  # noqa: E731
            images = exact.maximize(score, self.conv, s.size, images_of, self.image_channels.count)
            if on_step is not None:
                on_step(1)  # one gradient pass, which is how the build's cost model counts it
            return images, None
        rngs = [filter_rng(s.seed, self.layer_name, i, c) for i in indices for c in range(copies)]
        idx = ops.convert_to_tensor(np.asarray(images_of, dtype="int32"))
        return self._optimize(rngs, idx, on_step, snapshots, on_snapshot)

    def _optimize(self, rngs, targets, on_step: Callable | None = None, snapshots: Sequence[int] = (),
                  on_snapshot: Callable | None = None):
        """``(images, transparency or None)``: one image per generator in ``rngs``, each
        started and transformed from its own generator and stepped on :meth:`_objective`,
        which gets ``targets`` (filter indices here, photos for a caricature)."""
        s = self.settings
        p = ops.convert_to_tensor(np.stack([self._init(rng) for rng in rngs]))
        view = s.size + 2 * self.padding
        matrices = (
            np.stack([transforms.sample_matrices(self.samplers, rng, s.steps, view) for rng in rngs], axis=1)
            if self.samplers else None
        )
        m, v = ops.zeros_like(p), ops.zeros_like(p)
        gathered = (ops.zeros((len(rngs), s.size, s.size), "float32"),) if self.transparent else ()
        done = 0
        plan = stages(s.steps, s.size, s.scales)
        if 0 in snapshots and on_snapshot is not None:
            on_snapshot(0, plan[0][0], self._pixels(p))  # the start: the parameterization's initial noise
        for canvas, n in plan:
            for _, length in spans(n, CHUNK):
                mats = None
                if matrices is not None:
                    mats = ops.convert_to_tensor(transforms.resample_matrices(
                        matrices[done:done + length], view, canvas + 2 * self._padding_at(canvas)))
                run = self._loop(canvas, length)
                p, m, v, *gathered = run(p, m, v, ops.convert_to_tensor(float(done)), targets, mats, *gathered)
                done += length
                if on_step is not None:
                    on_step(length)
                if done in snapshots and on_snapshot is not None:
                    on_snapshot(done, canvas, self._pixels(p))
        return self._pixels(p), (ops.convert_to_numpy(gathered[0]).astype("float32") if gathered else None)

    def _pixels(self, p) -> np.ndarray:
        return np.round(ops.convert_to_numpy(self._image_fn(p)) * 255.0).clip(0, 255).astype("uint8")

    def activation(self, images: np.ndarray, indices: Sequence[int]) -> np.ndarray:
        """The mean pre-activation 8-bit images of these filters reach, without transforms."""
        return self.scores(images, indices)[0]

    def scores(self, images: np.ndarray, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(mean pre-activation, peak)`` of 8-bit images of these filters, untransformed,
        in one forward pass (see :meth:`_summary`)."""
        x = ops.convert_to_tensor(images.astype("float32") / 255.0)
        idx = ops.convert_to_tensor(np.asarray(indices, dtype="int32"))
        both = ops.convert_to_numpy(self._score(x, idx)).astype("float32")
        return both[:, 0], both[:, 1]


class Renderers:
    """One renderer per ``(variant, layer)``, kept with its compiled programs for every later
    batch of that layer; compiled ahead where it pays.

    Compiling a layer's programs takes seconds that an accelerator would sit idle through,
    so where the backend can compile without running (:func:`grad.compiles_ahead`) a few
    threads compile the next layers while the device renders this one. On a CPU the
    compiler would only compete with the rendering for the same cores, so ``ahead``
    defaults to "on an accelerator".
    """

    def __init__(self, model, settings: RenderSettings, preprocess, groups: dict[tuple[str, str], list[int]],
                 ahead: bool | None = None, channels: Channels | None = None):
        self._make = lambda variant, layer: FilterRenderer(model, layer, settings, preprocess, variant, channels)
        if ahead is None:
            ahead = grad.accelerator() is not None
        self._pool = None
        self._pending: dict = {}
        self._built: dict[tuple[str, str], FilterRenderer] = {}
        if ahead and grad.compiles_ahead():
            # XLA compiles a program on about one core; leave most cores to the host's other work.
            workers = max(1, min(4, (os.cpu_count() or 1) // 4))
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="compile")
            for (variant, layer), indices in groups.items():
                renderer = self._make(variant, layer)  # built here: graph surgery is not thread-safe
                sizes = {length for _, length in spans(len(indices), renderer.filters_per_batch)}
                self._pending[(variant, layer)] = (renderer, self._pool.submit(renderer.prepare, sizes))

    def ready(self, variant: str, layer: str) -> FilterRenderer:
        """The renderer for ``(variant, layer)``, once its programs are compiled."""
        if (variant, layer) in self._pending:
            renderer, compiled = self._pending.pop((variant, layer))
            compiled.result()  # a compile error surfaces here, with its own traceback
            self._built[(variant, layer)] = renderer
        elif (variant, layer) not in self._built:
            self._built[(variant, layer)] = self._make(variant, layer)
        return self._built[(variant, layer)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class Shape(NamedTuple):
    """The shape and dtype of an argument, for compiling ahead."""

    shape: tuple
    dtype: str


def _channel_count(layer) -> int:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return int(layer.kernel.shape[-2] * layer.kernel.shape[-1])
    if isinstance(layer, keras.layers.SeparableConv2D):
        return int(layer.pointwise_kernel.shape[-1])
    return int(layer.kernel.shape[-1])


def channel_count(model: keras.Model, layer: str) -> int:
    return _channel_count(graph.locate(model, layer).layer)


def visualize_filters(model, layer: str, filters, *, size: int | None = None, steps: int | None = None,
                      seed: int = 0, preprocess=None, batch: int | None = None, preset: str = "default",
                      param: str | None = None, transparency: bool = False):
    """Activation-maximization images for ``filters`` of ``layer``: uint8 ``(n, size, size, c)``,
    ``c`` the model's input channels (3 for RGB; see :mod:`gallery.channels`).

    Settings not given come from ``preset`` for this machine's device, as the CLI's do: with
    none given on a CPU, these are exactly the tiles of a default build. ``param`` is the
    image parameterization, ``"fourier"``, ``"pixel"`` or ``"maco"`` (as ``--param``). With
    ``transparency``, returns ``(images, maps)``: MACO's transparency maps, float32
    ``(n, size, size)`` (see :meth:`FilterRenderer.images_and_transparency`), which only
    ``param="maco"`` makes (``None`` for a layer solved in closed form, which is not optimized).
    """
    from .. import presets

    given = {"size": size, "steps": steps, "batch": batch, "parameterization": param}
    device = grad.accelerator()
    # As a build chooses: a model with depthwise convolutions keeps float32 on an AMX CPU.
    render, plain = (RenderSettings(seed=seed, **presets.render_part(presets.resolve(preset, device, given, bf16)))
                     for bf16 in (None, False))
    settings = precision.settings_for(model, render, plain)
    renderer = FilterRenderer(model, layer, settings, preprocess)
    if transparency and settings.parameterization not in params.TRANSPARENT:
        raise GalleryError(f"transparency=True needs param='maco' (its maps come from MACO's optimization), "
                           f"got param={settings.parameterization!r}")
    filters = list(filters)
    chunks = [renderer.images_and_transparency(filters[start:start + length])
              for start, length in spans(len(filters), settings.batch)]
    side = (0, settings.size, settings.size)
    images = (np.concatenate([c[0] for c in chunks]) if chunks
              else np.zeros((*side, renderer.image_channels.count), "uint8"))
    if not transparency:
        return images
    if not renderer.transparent:  # a layer solved in closed form: no optimization, no map
        return images, None
    return images, (np.concatenate([c[1] for c in chunks]) if chunks else np.zeros(side, "float32"))
