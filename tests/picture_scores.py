"""What a saved 8-bit filter tile looks like, as figures: a scorer independent of the renderer.

Activation alone cannot tell a natural picture from a posterized one: an optimizer that
drives every channel to 0 or 255 raises it. These figures see what a reader sees, from
the tile's decoded pixels only, and are read beside the robust activation of
``tests/tile_scores.py``:

- *clip*: the share of channel values at the ends of the range, ``≤ 3`` or ``≥ 252``.
  Natural photos at 128 px: about 0.007.
- *corner*: the share of pixels whose every channel is clipped, i.e. one of the eight
  corner colours of the RGB cube (pure red, green, blue, cyan, magenta, yellow, black,
  white). Natural photos: about 0.001.
- *checker*: the share of spectral power (each channel's mean removed) at frequencies
  with both ``|fx| ≥ 0.375`` and ``|fy| ≥ 0.375`` cycles per pixel, where the 2-pixel
  checkerboard that strided and pooled networks print into gradients lives. A 2-pixel
  checkerboard scores 1, natural photos about 0.000.
- *HF*: the share above half Nyquist (radial frequency over 0.25 cycles per pixel),
  from ``tests/tile_scores.py``: white noise 0.80, smooth images near 0.

Each function takes ``(n, h, w, c)`` uint8 images and returns one figure per image.
"""

from __future__ import annotations

import numpy as np

from .tile_scores import high_frequency

LOW, HIGH = 3, 252  # 8-bit values counted as clipped: at or beyond these
CHECKER = 0.375  # cycles per pixel, on both axes


def _clipped(images: np.ndarray) -> np.ndarray:
    return (images <= LOW) | (images >= HIGH)


def clip(images: np.ndarray) -> np.ndarray:
    """Per image, the share of channel values ``≤ 3`` or ``≥ 252``."""
    return _clipped(images).reshape(len(images), -1).mean(axis=1)


def corner(images: np.ndarray) -> np.ndarray:
    """Per image, the share of pixels with every channel clipped (a corner of the RGB cube)."""
    return _clipped(images).all(axis=-1).reshape(len(images), -1).mean(axis=1)


def checker(images: np.ndarray) -> np.ndarray:
    """Per image, the share of spectral power with ``|fx|`` and ``|fy|`` both ``≥ 0.375``."""
    n, h, w, _ = images.shape
    x = images.astype("float64")
    x -= x.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2).sum(axis=-1)
    fy, fx = np.abs(np.fft.fftfreq(h))[:, None], np.abs(np.fft.fftfreq(w))[None, :]
    band = (fy >= CHECKER) & (fx >= CHECKER)
    return power[:, band].sum(axis=1) / np.maximum(power.reshape(n, -1).sum(axis=1), 1e-12)


FIGURES = {"clip": clip, "corner": corner, "checker": checker, "HF": high_frequency}


def figures(images: np.ndarray) -> dict[str, np.ndarray]:
    """Every picture figure of every image: ``{name: (n,)}``."""
    return {name: figure(images) for name, figure in FIGURES.items()}


def photos_at(paths, size: int) -> np.ndarray:
    """Photos as ``(n, size, size, 3)`` uint8, each centre-cropped to a square and resized
    (Lanczos), the reference the figures of tiles of that size are read against."""
    from PIL import Image

    out = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            out.append(np.asarray(image.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)))
    return np.stack(out)
