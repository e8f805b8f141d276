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


def resize(side: int) -> Callable:
    """An antialiased resize to ``side × side``, for coarse-to-fine schedules.

    Antialiasing averages every source pixel into the smaller image, so each one still
    receives gradient; plain bilinear sampling would skip most of them.
    """
    return lambda x: ops.image.resize(x, (side, side), interpolation="bilinear", antialias=True)


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


def resample_matrices(matrices: np.ndarray, size: int, canvas: int) -> np.ndarray:
    """The same geometric transforms for an image resized from ``size`` to ``canvas`` pixels.

    With pixel centres at integers, ``x_canvas = r·(x + ½) − ½`` where ``r = canvas / size``;
    conjugating by that map ``D`` gives ``D · M · D⁻¹``, so shifts shrink with the image
    and rotations and zooms keep their centre.
    """
    if canvas == size:
        return matrices
    r = canvas / size
    d = np.array([[r, 0, 0.5 * r - 0.5], [0, r, 0.5 * r - 0.5], [0, 0, 1]], dtype="float64")
    return (d @ matrices.astype("float64") @ np.linalg.inv(d)).astype("float32")


def pipeline(kind: str) -> tuple[int, list[Callable]]:
    """``(padding, geometric samplers)`` for a named transform set.

    ``lucid`` is Lucid's ``standard_transforms``: the network sees the image on a grey
    canvas 12 pixels wider on each side. ``standard`` draws the same transforms but lets
    the network see only the tile's own window: since the warp fills with the same grey,
    this is the padded result cropped back to the tile, at (size / (size + 24))² of the
    cost (0.71× at 128 px).
    """
    if kind == "none":
        return 0, []
    return (PAD if kind == "lucid" else 0), standard_geometric()


def step_transform(padding: int, matrices, canvas: int | None = None) -> Callable:
    """The ``x → x`` function one optimization step applies, at ``canvas`` pixels if given."""
    parts = [resize(canvas)] if canvas else []
    parts += [pad(padding)] if padding else []
    if matrices is not None:
        parts.append(warp(matrices))
    return compose(parts)
