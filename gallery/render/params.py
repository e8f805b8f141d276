"""Image parameterizations: each returns ``(init, image_fn)``.

``init(rng)`` draws one image's starting parameters from its own numpy generator, so a
filter's image never depends on which other filters share its batch. ``image_fn(params)``
maps a stacked batch of parameters to RGB images in ``[0, 1]``, shape
``(batch, size, size, 3)``.
"""

from __future__ import annotations

import numpy as np
from keras import ops

# Square root of the ImageNet colour correlation matrix (Olah et al., "Feature
# Visualization", Distill 2017). Optimizing in this decorrelated basis keeps colours
# natural instead of letting every channel drift independently.
COLOR_CORRELATION_SVD_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype="float32"
)
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))


def decorrelate(x):
    """Map decorrelated colour coordinates to RGB: ``rgb = x · Cᵀ`` on the last axis."""
    return ops.matmul(x, ops.convert_to_tensor(COLOR_CORRELATION.T))


def to_rgb(x, decorrelated: bool = True, contrast: float | None = None):
    """Bounded output: a sigmoid keeps every pixel inside the valid range.

    With ``contrast``, the image is first held inside a ball (:func:`within_contrast`) in
    its own colour coordinates, the decorrelated ones where ``decorrelated``.
    """
    if contrast is not None:
        x = within_contrast(x, contrast)
    return ops.sigmoid(decorrelate(x) if decorrelated else x)


def within_contrast(x, contrast: float):
    """Each image scaled down, as a whole, until its root mean square is at most ``contrast``:
    ``x · min(1, contrast / rms(x))``, a radial projection onto a ball about mid-grey.

    Why: a sigmoid alone bounds each pixel by itself (a box), and the best image inside a
    box sits in its corners: run long enough, activation maximization drives every
    channel to 0 or 255 and the tile posterizes into the RGB cube's eight corner colours.
    Inside a ball the optimum of a locally linear objective is its gradient's direction,
    which shades (MACO, Fel et al. 2023, bounds its images' magnitude for the same
    reason). Taken in the decorrelated colour basis, the ball is an ImageNet colour prior:
    a unit of chroma costs as much as a unit of luminance but moves RGB 3.6 and 7.5 times
    less (the columns of :data:`COLOR_CORRELATION`), so strong colours must earn their
    place. The map is scale-free where it is active, so the step still follows the
    objective's gradient along the sphere.
    """
    axes = tuple(range(1, len(x.shape)))
    rms = ops.sqrt(ops.mean(ops.square(x), axis=axes, keepdims=True) + 1e-12)
    return x * ops.minimum(1.0, contrast / rms)


def pixel(size: int, decorrelated: bool = True, sd: float = 0.01, contrast: float | None = None):
    """Plain pixels, one free value per pixel and channel."""
    return (lambda rng: rng.normal(0.0, sd, (size, size, 3)).astype("float32"),
            lambda p: to_rgb(p, decorrelated, contrast))


def spectrum_scale(h: int, w: int, decay: float = 1.0) -> np.ndarray:
    """The 1/f amplitude scaling of Fourier coefficients, shape ``(h, w // 2 + 1)``.

    ``scale(f) = 1 / max(f, 1 / max(h, w)) ** decay`` with ``f`` the frequency magnitude
    in cycles per pixel, so natural-image (pink) spectra need small, equal parameters.
    """
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    return (1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay).astype("float32")


def irfft2_bases(h: int, w: int):
    """Real matrices that compute ``numpy.fft.irfft2(re + i·im, s=(h, w), norm="ortho")``.

    ``x = (C_h·re − S_h·im)·Cw − (S_h·re + C_h·im)·Sw`` where the ``h`` axis is a full
    inverse DFT and the ``w`` axis a Hermitian (half-spectrum) one whose interior bins
    count twice. Plain matmuls run fast and identically on every backend.
    """
    m = np.arange(h)
    angle_h = 2 * np.pi * np.outer(m, m) / h
    wf = w // 2 + 1
    weight = np.full(wf, 2.0)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    angle_w = 2 * np.pi * np.outer(np.arange(wf), np.arange(w)) / w
    norm = 1.0 / np.sqrt(h * w)
    return tuple(
        a.astype("float32")
        for a in (np.cos(angle_h), np.sin(angle_h), weight[:, None] * np.cos(angle_w) * norm,
                  weight[:, None] * np.sin(angle_w) * norm)
    )


def irfft2(re, im, bases):
    ch, sh, cw, sw = (ops.convert_to_tensor(b) for b in bases)
    t_re = ops.matmul(ch, re) - ops.matmul(sh, im)
    t_im = ops.matmul(sh, re) + ops.matmul(ch, im)
    return ops.matmul(t_re, cw) - ops.matmul(t_im, sw)


def fourier(size: int, decorrelated: bool = True, sd: float = 0.01, decay: float = 1.0,
            contrast: float | None = None):
    """Fourier-space parameterization with 1/f scaling (Lucid's ``fft_image``).

    ``decay`` is the slope of the amplitude spectrum: Lucid's 1 gives natural images'
    pink spectrum; a steeper slope gives coarse structure larger steps and fine detail
    smaller ones.

    Params have shape ``(batch, 2, 3, size, size // 2 + 1)``: real and imaginary parts of
    each colour channel's half spectrum. The division by 4 follows Lucid's scale for
    sigmoid outputs.
    """
    wf = size // 2 + 1
    init = lambda rng: rng.normal(0.0, sd, (2, 3, size, wf)).astype("float32")  # noqa: E731
    scale = ops.convert_to_tensor(spectrum_scale(size, size, decay))
    bases = irfft2_bases(size, size)

    def image_fn(p):
        spatial = irfft2(p[:, 0] * scale, p[:, 1] * scale, bases) / 4.0  # (b, 3, h, w)
        return to_rgb(ops.transpose(spatial, (0, 2, 3, 1)), decorrelated, contrast)

    return init, image_fn


PARAMETERIZATIONS = {"fourier": fourier, "pixel": pixel}


def parameterize(name: str, size: int, decay: float = 1.0, contrast: float | None = None):
    """``(init, image_fn)`` of parameterization ``name``; ``decay`` is the Fourier one's slope,
    ``contrast`` the bound on its logits (:func:`within_contrast`; ``None``: none)."""
    if name == "fourier":
        return fourier(size, decay=decay, contrast=contrast)
    return PARAMETERIZATIONS[name](size, contrast=contrast)
