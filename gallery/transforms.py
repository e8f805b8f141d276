"""Transformation robustness (Olah et al., "Feature Visualization", Distill 2017).

Pixel transforms are ``x → x`` functions on ``(batch, h, w, 3)`` images, joined by
:func:`compose`. The random geometric ones (jitter, scale, rotate) are drawn per image
and per step in numpy, as 3×3 matrices that map output coordinates to input
coordinates; their product becomes a single bilinear warp inside the compiled step, so
the whole set costs one resampling. Drawing in numpy keeps every backend deterministic
and each filter's randomness independent of its batch neighbours.
"""

from __future__ import annotations

from functools import reduce
from typing import Callable, Sequence

import numpy as np
from keras import ops

GREY = 0.5


def compose(transforms: Sequence[Callable]) -> Callable:
    return lambda x: reduce(lambda acc, t: t(acc), transforms, x)


def pad(pixels: int, value: float = GREY) -> Callable:
    """Constant padding on every side, so jitter and rotation never expose the border."""

    def run(x):
        return ops.pad(x, ((0, 0), (pixels, pixels), (pixels, pixels), (0, 0)), constant_values=value)

    return run


def warp(matrices) -> Callable:
    """Bilinear warp of each image by its own output→input matrix, shape ``(batch, 3, 3)``."""

    def run(x):
        flat = ops.reshape(matrices, (-1, 9))[:, :8]
        return ops.image.affine_transform(
            x, flat, interpolation="bilinear", fill_mode="constant", fill_value=GREY
        )

    return run


# Random geometric transforms: ``sampler(rng, size) -> 3×3 output→input matrix``.


def _about_centre(matrix: np.ndarray, size: int) -> np.ndarray:
    c = (size - 1) / 2.0
    to_origin = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]], dtype="float64")
    back = np.array([[1, 0, c], [0, 1, c], [0, 0, 1]], dtype="float64")
    return back @ matrix @ to_origin


def jitter(pixels: int) -> Callable:
    """A random integer shift of up to ``pixels`` in each direction."""

    def sample(rng, size):
        dx, dy = rng.integers(-pixels, pixels + 1, size=2)
        return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype="float64")

    return sample


def scale(factors: Sequence[float]) -> Callable:
    """A zoom by a factor drawn from ``factors``, about the image centre."""

    def sample(rng, size):
        s = float(rng.choice(factors))
        return _about_centre(np.diag([1.0 / s, 1.0 / s, 1.0]), size)

    return sample


def rotate(degrees: Sequence[float]) -> Callable:
    """A rotation by an angle drawn from ``degrees``, about the image centre."""

    def sample(rng, size):
        a = np.deg2rad(float(rng.choice(degrees)))
        inverse = np.array([[np.cos(a), np.sin(a), 0], [-np.sin(a), np.cos(a), 0], [0, 0, 1]])
        return _about_centre(inverse, size)

    return sample


def standard_geometric() -> list[Callable]:
    """Lucid's ``standard_transforms`` minus the padding: jitter 8, scale ±10 %, rotate ±10°, jitter 4."""
    return [
        jitter(8),
        scale([1 + (i - 5) / 50.0 for i in range(11)]),
        rotate(list(range(-10, 11)) + 5 * [0]),
        jitter(4),
    ]


PAD = 12


def sample_matrices(samplers: Sequence[Callable], rng, steps: int, size: int) -> np.ndarray:
    """``(steps, 3, 3)`` matrices for one image: the transforms applied in list order.

    Applying T1 then T2 reads the input at ``M1 · M2 · p`` for an output pixel ``p``,
    so the matrices multiply in list order.
    """
    out = np.empty((steps, 3, 3), dtype="float32")
    for s in range(steps):
        out[s] = reduce(np.matmul, (sample(rng, size) for sample in samplers), np.eye(3))
    return out


def pipeline(kind: str) -> tuple[int, list[Callable]]:
    """``(padding, geometric samplers)`` for a named transform set."""
    if kind == "none":
        return 0, []
    return PAD, standard_geometric()


def step_transform(padding: int, matrices) -> Callable:
    """The ``x → x`` function one optimization step applies."""
    parts = [pad(padding)] if padding else []
    if matrices is not None:
        parts.append(warp(matrices))
    return compose(parts)
