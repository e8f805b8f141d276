"""Image parameterizations: each returns ``(init, image_fn)``.

``init(rng)`` draws one image's starting parameters from its own numpy generator, so a
filter's image never depends on which other filters share its batch. ``image_fn(params)``
maps a stacked batch of parameters to images in ``[0, 1]``, shape
``(batch, size, size, channels)``: RGB for most models, and for others as many channels as
the model takes (:class:`gallery.channels.Channels`), decorrelated where three are named RGB.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from keras import ops

from ..channels import RGB, Channels
from ..errors import GalleryError

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


# How far a unit of the luminance coordinate moves each RGB channel: the mean of
# COLOR_CORRELATION's first column (≈ 0.57, about 1/√3).
GREY_GAIN = float(COLOR_CORRELATION[:, 0].mean())


def mixing(channels: Channels) -> np.ndarray:
    """``(c, c)``: :data:`COLOR_CORRELATION` on the three channels named RGB, the identity on
    the rest: colour decorrelation where it is defined, and nowhere else (the colour prior of
    ImageNet photos says nothing of depth or infrared)."""
    m = np.eye(channels.count, dtype="float32")
    if channels.rgb is not None:
        m[np.ix_(channels.rgb, channels.rgb)] = COLOR_CORRELATION
    return m


def to_channels(x, channels: Channels, decorrelated: bool = True, contrast: float | None = None):
    """:func:`to_rgb` for any channels: RGB models take exactly that path.

    Other models' images are held in the ball (:func:`within_contrast`) over all of their
    coordinates, then decorrelated on the channels named RGB (:func:`mixing`). A grey image
    has no colour to decorrelate, so its one coordinate is its grey value itself, and its
    ball is the RGB ball's radius per coordinate (``contrast``, an rms over coordinates) on
    its luminance coordinate, in grey units: a unit of that coordinate moves each RGB
    channel by :data:`GREY_GAIN`, so the grey ball's radius is ``GREY_GAIN · contrast``. At
    the whole RGB budget spent on luminance instead (√3 times that), VGG16-HED's
    block2_conv2 grey tiles clipped 4.3% of their pixels to black or white, past the picture
    limits (tests/render/test_picture_limits.py; 0.1% at this radius).
    """
    if channels.plain:
        return to_rgb(x, decorrelated, contrast)
    if contrast is not None:
        x = within_contrast(x, contrast * GREY_GAIN if channels.count == 1 else contrast)
    if decorrelated and channels.rgb is not None:
        x = ops.matmul(x, ops.convert_to_tensor(mixing(channels).T))
    return ops.sigmoid(x)


def pixel(size: int, decorrelated: bool = True, sd: float = 0.01, contrast: float | None = None,
          channels: Channels = RGB):
    """Plain pixels, one free value per pixel and channel."""
    return (lambda rng: rng.normal(0.0, sd, (size, size, channels.count)).astype("float32"),
            lambda p: to_channels(p, channels, decorrelated, contrast))


def spectrum_scale(h: int, w: int, decay: float = 1.0) -> np.ndarray:
    """The 1/f amplitude scaling of Fourier coefficients, shape ``(h, w // 2 + 1)``.

    ``scale(f) = 1 / max(f, 1 / max(h, w)) ** decay`` with ``f`` the frequency magnitude
    in cycles per pixel, so natural-image (pink) spectra need small, equal parameters.
    """
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    return (1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay).astype("float32")


def hermitian_weights(w: int) -> np.ndarray:
    """How many bins of the full spectrum each bin of a real image's half spectrum (width
    ``w // 2 + 1``) stands for: 1 for the self-conjugate columns (0, and ``w / 2`` for an even
    ``w``), 2 for every other, whose mirror is its conjugate."""
    weight = np.full(w // 2 + 1, 2.0)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    return weight


def irfft2_bases(h: int, w: int):
    """Real matrices that compute ``numpy.fft.irfft2(re + i·im, s=(h, w), norm="ortho")``.

    ``x = (C_h·re − S_h·im)·Cw − (S_h·re + C_h·im)·Sw`` where the ``h`` axis is a full
    inverse DFT and the ``w`` axis a Hermitian (half-spectrum) one whose interior bins
    count twice. Plain matmuls run fast and identically on every backend.
    """
    m = np.arange(h)
    angle_h = 2 * np.pi * np.outer(m, m) / h
    wf = w // 2 + 1
    weight = hermitian_weights(w)
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
            contrast: float | None = None, channels: Channels = RGB):
    """Fourier-space parameterization with 1/f scaling (Lucid's ``fft_image``).

    ``decay`` is the slope of the amplitude spectrum: Lucid's 1 gives natural images'
    pink spectrum; a steeper slope gives coarse structure larger steps and fine detail
    smaller ones.

    Params have shape ``(batch, 2, c, size, size // 2 + 1)``: real and imaginary parts of
    each channel's half spectrum (``c = 3`` for RGB; a grey model's one channel has no colour
    to decorrelate, see :func:`to_channels`). The division by 4 follows Lucid's scale for
    sigmoid outputs.
    """
    wf = size // 2 + 1
    init = lambda rng: rng.normal(0.0, sd, (2, channels.count, size, wf)).astype("float32")  # noqa: E731
    scale = ops.convert_to_tensor(spectrum_scale(size, size, decay))
    bases = irfft2_bases(size, size)

    def image_fn(p):
        spatial = irfft2(p[:, 0] * scale, p[:, 1] * scale, bases) / 4.0  # (b, c, h, w)
        return to_channels(ops.transpose(spatial, (0, 2, 3, 1)), channels, decorrelated, contrast)

    return init, image_fn


# The photographs MACO's natural-image magnitude is measured on: the colour photos that ship
# with scikit-image (a dependency already), each free of copyright: astronaut (NASA, public
# domain), chelsea and coffee (CC0, by their photographers), rocket (SpaceX, public domain).
SPECTRUM_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def _square_crops(photo: np.ndarray) -> list[np.ndarray]:
    """Squares of a photo: the largest ones at its start, middle and end along its long side,
    and four corner ones of 3/4 that side, so each photo gives several views of one scene."""
    h, w = photo.shape[:2]
    side, small = min(h, w), 3 * min(h, w) // 4
    crops = {(y, x, side) for y, x in ((0, 0), ((h - side) // 2, (w - side) // 2), (h - side, w - side))}
    crops |= {(y, x, small) for y in (0, h - small) for x in (0, w - small)}
    return [photo[y:y + n, x:x + n] for y, x, n in sorted(crops)]


@lru_cache(maxsize=8)
def _photo_crops(size: int) -> tuple[np.ndarray, ...]:
    """Every :func:`_square_crops` of :data:`SPECTRUM_PHOTOS` resampled to ``size`` pixels,
    float64 RGB in ``[0, 1]``."""
    import skimage.data

    from .. import imaging

    return tuple(imaging.resize_channels(crop.astype("float32") / 255.0, size, size).astype("float64")
                 for name in SPECTRUM_PHOTOS for crop in _square_crops(getattr(skimage.data, name)()))


@lru_cache(maxsize=8)
def natural_magnitude(size: int) -> np.ndarray:
    """The amplitude spectrum of natural images at ``size`` pixels, shape ``(3, size, size // 2 + 1)``,
    per channel of the decorrelated colour basis (:data:`COLOR_CORRELATION`); deterministic.

    Measured, as MACO's own template is on ImageNet, on :data:`SPECTRUM_PHOTOS`: each of
    their :func:`_square_crops` is resampled to ``size`` (Pillow's antialiased bilinear, so
    the band just below Nyquist is damped as a camera's optics would damp it), taken to the
    decorrelated basis, Hann-windowed, and the per-channel ``|rfft2|`` (orthonormal)
    averaged over them all.
    Three choices follow, each an identity the optimization relies on:

    - left-right mirror symmetry (the statistics of photos are mirror-symmetric; averaging
      ``|X[k, l]|`` with ``|X[-k, l]|`` also gives the self-conjugate columns the symmetry a
      real image's spectrum has);
    - the DC bin set to 0, so every image's mean colour is the grey the sigmoid puts at 0:
      a fixed DC would give every image the photos' mean colour, and a free one would be a
      parameter that is not a phase;
    - scaled so that the image has mean 0 and variance 1 over its pixels and channels, by
      Parseval's theorem whatever the phases: this is the standardisation the reference
      implementation applies after every inverse transform, made once.

    The photos are at least 300 px on their short side, so up to that size the whole band is
    measured; above it the top of the band is the resampler's, not the photos'.
    """
    to_decorrelated = np.linalg.inv(COLOR_CORRELATION.T).astype("float64")
    # A Hann window: the FFT treats each crop as periodic, and the jump from its right edge
    # to its left (bottom to top) would add a cross of power along both frequency axes,
    # which images under that magnitude show as a grid of horizontal and vertical lines.
    window = np.outer(np.hanning(size), np.hanning(size))[:, :, None]
    spectra = []
    for crop in _photo_crops(size):
        y = crop @ to_decorrelated
        y = (y - y.mean(axis=(0, 1))) * window
        spectra.append(np.abs(np.fft.rfft2(y, axes=(0, 1), norm="ortho")))
    magnitude = np.mean(spectra, axis=0).transpose(2, 0, 1)  # (3, size, size // 2 + 1)
    magnitude = (magnitude + magnitude[:, (-np.arange(size)) % size]) / 2
    magnitude[:, 0, 0] = 0.0
    energy = np.sum(hermitian_weights(size) * magnitude ** 2)  # Σ over the full spectrum = Σ x² (Parseval)
    return (magnitude * np.sqrt(3 * size * size / energy)).astype("float32")


@lru_cache(maxsize=8)
def natural_contrast(size: int, draws: int = 4) -> float:
    """The gain ``g`` for which ``sigmoid(C · g · z)``, with ``z`` a unit-variance MACO field
    (:func:`natural_magnitude`, random phases), has the photos' own contrast: the standard
    deviation of its pixels equals the mean, over the crops :func:`natural_magnitude` is
    measured on, of theirs. Deterministic (fixed phases, then bisection).

    The reference implementation feeds ``sigmoid(C · z)`` to the network and stretches it to
    its full range only to show it; a tile is shown as it was optimized, and at ``g = 1``
    its pixels spread 0.13 against the photos' 0.18 at 128 px: greyer than a photo, and
    reaching a smaller activation for it. Since ``z``'s variance does not depend on its
    phases (Parseval), neither does this contrast as the phases are optimized.
    """
    target = float(np.mean([crop.std(axis=(0, 1)).mean() for crop in _photo_crops(size)]))
    magnitude = natural_magnitude(size).astype("float64")
    phases = np.random.default_rng(0).uniform(-np.pi, np.pi, (draws, *magnitude.shape))
    z = np.fft.irfft2(magnitude * np.exp(1j * phases), s=(size, size), norm="ortho")  # (draws, 3, h, w)
    rgb = np.moveaxis(z, 1, -1) @ COLOR_CORRELATION.T.astype("float64")

    def spread(g: float) -> float:
        return float(np.mean((1.0 / (1.0 + np.exp(-g * rgb))).std(axis=(1, 2))))

    lo, hi = 0.0, 16.0  # spread rises with g, from 0 towards 0.5
    for _ in range(40):
        lo, hi = ((lo + hi) / 2, hi) if spread((lo + hi) / 2) < target else (lo, (lo + hi) / 2)
    return (lo + hi) / 2


def odd_rows(h: int):
    """``(source, sign)`` tensors that make a column odd in its row index ``k`` (of ``h``):
    ``column[source] · sign`` keeps rows ``0 < k < h/2``, gives row ``h − k`` the negative
    of row ``k``, and 0 to rows 0 and ``h/2``, which are their own mirror."""
    k = np.arange(h)
    upper = (k > 0) & (2 * k < h)
    lower = 2 * k > h
    source = np.where(lower, h - k, k).astype("int32")
    sign = np.where(upper, 1.0, np.where(lower, -1.0, 0.0)).astype("float32")
    return ops.convert_to_tensor(source), ops.convert_to_tensor(sign)[None, None, :, None]


def phase_field(phase, magnitude, bases, mirror, self_conjugate):
    """MACO's image before its bounding nonlinearity: ``irfft2(M · e^{iφ})``, ``(b, 3, h, w)``
    in the decorrelated colour basis.

    On the self-conjugate columns the phase is made odd in the row index: rows
    ``0 < k < h/2`` keep theirs, row ``−k`` takes ``−φ[k]`` and rows 0 and ``h/2`` take 0
    (``mirror``, a signed row index, says which). A real image's spectrum is Hermitian, and
    without this the inverse transform would keep only the Hermitian part, whose amplitude
    ``M·|cos|`` is not the fixed one. So the image's amplitude spectrum is exactly ``M``,
    bin for bin, and every parameter is an angle: a turn more gives the same image.

    The reference (Xplique's ``maco_image_parametrization``) also standardises the phases
    to mean 0 and deviation 1 before use. That keeps them partly aligned
    (``|E e^{iφ}| ≈ 0.6``), and aligned phases add up to a bright blob at pixel (0, 0),
    on all four corners of the tile; the reference's random crops rarely see the corners,
    but a tile is seen whole. Here the phases are used as they are, drawn uniformly.
    """
    source, sign = mirror
    phase = ops.where(self_conjugate, ops.take(phase, source, axis=2) * sign, phase)
    return irfft2(magnitude * ops.cos(phase), magnitude * ops.sin(phase), bases)


def maco(size: int):
    """MAgnitude Constrained Optimization (Fel et al., "Unlocking Feature Visualization for
    Deeper Networks with MAgnitude Constrained Optimization", NeurIPS 2023).

    The image is ``x = sigmoid(C · g · irfft2(M · e^{iφ}))``: its amplitude spectrum ``M``
    is fixed to that of natural images (:func:`natural_magnitude`) and only the phases ``φ``
    are optimized, so the image cannot buy activation with energy at frequencies where
    photos have little (the checkerboard, saturated noise): what it can change is where
    its structure lies. The field has mean 0 and variance 1 by construction (the
    reference's per-step standardisation) and the sigmoid bounds it, as in the reference;
    the one addition is the gain ``g`` (:func:`natural_contrast`), which gives the tile the
    photos' contrast where the reference stretches its image only for display.

    Colour: the phases are drawn per channel of the decorrelated basis ``C`` and ``M`` is
    measured there, as the reference's ImageNet template is. Independent phases per channel
    make the channels uncorrelated, which photos are in that basis and not in RGB: random
    phases per RGB channel would misalign the channels' edges into colour fringes.

    Params have shape ``(batch, 3, size, size // 2 + 1)``: one phase per channel and bin of
    the half spectrum, drawn uniformly from ``[−π, π)`` (see :func:`phase_field`).
    """
    wf = size // 2 + 1
    init = lambda rng: rng.uniform(-np.pi, np.pi, (3, size, wf)).astype("float32")  # noqa: E731
    magnitude = ops.convert_to_tensor(natural_magnitude(size))
    bases = irfft2_bases(size, size)
    mirror = odd_rows(size)
    self_conjugate = ops.convert_to_tensor(hermitian_weights(size) == 1.0)
    gain = natural_contrast(size)

    def image_fn(p):
        spatial = phase_field(p, magnitude, bases, mirror, self_conjugate)
        return to_rgb(gain * ops.transpose(spatial, (0, 2, 3, 1)))

    return init, image_fn


PARAMETERIZATIONS = {"fourier": fourier, "pixel": pixel, "maco": maco}
# Parameterizations whose optimization also yields a transparency map (MACO's: where the
# objective's gradient with respect to the image gathered over the steps).
TRANSPARENT = ("maco",)


# Parameterizations defined for RGB models alone: MACO's amplitude spectrum and contrast are
# measured on colour photos, in the decorrelated basis.
RGB_ONLY = ("maco",)


def check_channels(name: str, channels: Channels, title: str = "model") -> None:
    """Refuse, in one line, a parameterization defined for RGB alone on another model."""
    if name in RGB_ONLY and not channels.plain:
        raise GalleryError(f"--param {name}: its amplitude spectrum is measured on RGB photos, and {title!r} takes "
                           f"{channels.describe()}; use --param fourier or pixel")


def parameterize(name: str, size: int, decay: float = 1.0, contrast: float | None = None,
                 channels: Channels = RGB):
    """``(init, image_fn)`` of parameterization ``name``; ``decay`` is the Fourier one's slope,
    ``contrast`` the bound on its colour coordinates (:func:`within_contrast`; ``None``:
    none), ``channels`` the model's. MACO takes none of them: its magnitude is fixed, so its
    contrast is too, and measured on RGB photos."""
    check_channels(name, channels)
    if name == "fourier":
        return fourier(size, decay=decay, contrast=contrast, channels=channels)
    if name == "maco":
        return maco(size)
    return PARAMETERIZATIONS[name](size, contrast=contrast, channels=channels)
