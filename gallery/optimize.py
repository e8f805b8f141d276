"""Batched activation maximization (Erhan et al. 2009; Olah et al., Distill 2017).

Pure computation, no I/O: given a model, a conv layer and filter indices, return one
8-bit image per filter and the activation that image reaches. Each image optimizes
its own filter, so B filters share one forward and backward pass through the model
truncated at the target layer.
"""

from __future__ import annotations

import zlib
from typing import Callable, Sequence

import keras
import numpy as np
from keras import ops

from . import grad, graph, params, preprocess as prep, transforms
from .config import RenderSettings
from .objectives import channel, own_preactivation

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def filter_rng(seed: int, layer: str, index: int) -> np.random.Generator:
    """A generator that depends on the seed, the layer and the filter, nothing else."""
    return np.random.default_rng([seed, zlib.crc32(layer.encode("utf-8")), index])


class FilterRenderer:
    """Renders filters of one layer; compiled steps are reused across batches."""

    def __init__(self, model: keras.Model, layer: str, settings: RenderSettings, preprocess=None,
                 objective: Callable = channel):
        self.path = graph.locate(model, layer)
        self.layer_name = self.path.name
        self.settings = settings
        self.to_input = graph.input_fn(model, self.path)
        self.preprocess = prep.resolve(preprocess)
        self.objective = objective
        self.padding, self.samplers = transforms.pipeline(settings.transforms)
        self._init, self._image_fn = params.PARAMETERIZATIONS[settings.parameterization](settings.size)
        conv = self.path.layer
        self.channels = _channel_count(conv)

        def score(images, indices, matrices):
            x = transforms.step_transform(self.padding, matrices)(images)
            z = own_preactivation(conv, self.to_input(self.preprocess(x * 255.0)), indices)
            return self.objective(z)

        def loss(p, indices, matrices):
            value = score(self._image_fn(p), indices, matrices)
            return -ops.sum(value), value

        value_and_grad = grad.value_and_grad(loss)
        lr = settings.learning_rate

        def step(p, m, v, t, indices, matrices):
            (_, value), g = value_and_grad(p, indices, matrices)
            # Adam (Kingma & Ba, 2015), elementwise, so each image steps independently.
            m = ADAM_B1 * m + (1 - ADAM_B1) * g
            v = ADAM_B2 * v + (1 - ADAM_B2) * g * g
            m_hat = m / (1 - ADAM_B1 ** t)
            v_hat = v / (1 - ADAM_B2 ** t)
            return p - lr * m_hat / (ops.sqrt(v_hat) + ADAM_EPS), m, v, value

        self._step = grad.compile(step)
        self._score = grad.no_grad(lambda images, indices: score(images, indices, None))

    def render(self, indices: Sequence[int], on_step: Callable | None = None):
        """``(uint8 images (n, size, size, 3), activations (n,))`` for these filters.

        The activation is the objective on the saved 8-bit image, untransformed: what
        the tile on the page really achieves.
        """
        s = self.settings
        indices = [int(i) for i in indices]
        for i in indices:
            if not 0 <= i < self.channels:
                raise IndexError(f"filter {i} out of range for {self.layer_name} ({self.channels} filters)")
        rngs = [filter_rng(s.seed, self.layer_name, i) for i in indices]
        init = np.stack([self._init(rng) for rng in rngs])
        size = s.size + 2 * self.padding
        all_matrices = (
            np.stack([transforms.sample_matrices(self.samplers, rng, s.steps, size) for rng in rngs], axis=1)
            if self.samplers else None
        )
        p = ops.convert_to_tensor(init)
        m = ops.zeros_like(p)
        v = ops.zeros_like(p)
        idx = ops.convert_to_tensor(np.asarray(indices, dtype="int32"))
        for t in range(s.steps):
            matrices = None if all_matrices is None else ops.convert_to_tensor(all_matrices[t])
            p, m, v, _ = self._step(p, m, v, ops.convert_to_tensor(float(t + 1)), idx, matrices)
            if on_step is not None:
                on_step(t + 1)
        images = np.round(ops.convert_to_numpy(self._image_fn(p)) * 255.0).clip(0, 255).astype("uint8")
        activations = self.activation(images, indices)
        return images, activations

    def activation(self, images: np.ndarray, indices: Sequence[int]) -> np.ndarray:
        """The objective reached by 8-bit images of these filters, without transforms."""
        x = ops.convert_to_tensor(images.astype("float32") / 255.0)
        idx = ops.convert_to_tensor(np.asarray(indices, dtype="int32"))
        return ops.convert_to_numpy(self._score(x, idx)).astype("float32")


def _channel_count(layer) -> int:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return int(layer.kernel.shape[-2] * layer.kernel.shape[-1])
    if isinstance(layer, keras.layers.SeparableConv2D):
        return int(layer.pointwise_kernel.shape[-1])
    return int(layer.kernel.shape[-1])


def channel_count(model: keras.Model, layer: str) -> int:
    return _channel_count(graph.locate(model, layer).layer)


def visualize_filters(model, layer: str, filters, *, size: int = 128, steps: int = 128, seed: int = 0,
                      preprocess=None, batch: int = 32) -> np.ndarray:
    """Activation-maximization images for ``filters`` of ``layer``: uint8 ``(n, size, size, 3)``.

    Exactly what the gallery's tiles show for the same settings.
    """
    settings = RenderSettings(size=size, steps=steps, seed=seed, batch=batch)
    renderer = FilterRenderer(model, layer, settings, preprocess)
    filters = list(filters)
    chunks = [renderer.render(filters[i:i + batch])[0] for i in range(0, len(filters), batch)]
    return np.concatenate(chunks) if chunks else np.zeros((0, size, size, 3), "uint8")
