"""Pixels in, pixels out: normalisation, colormaps, overlays, contact sheets, encoding.

Pure numpy and Pillow; nothing here knows about models. Encoders return bytes so the
cache decides where and how they are written.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, features

FEATURE_COLORMAP = "viridis"
CAM_COLORMAP = "jet"
MAX_PIXELS = 64_000_000  # larger photos are refused rather than exhausting memory


def normalize_channels(maps: np.ndarray) -> np.ndarray:
    """Scale each channel of ``(h, w, c)`` maps to ``[0, 1]`` by its own min and max.

    A constant channel maps to zeros, not to NaN.
    """
    lo = maps.min(axis=(0, 1), keepdims=True)
    span = maps.max(axis=(0, 1), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1), 0.0).astype("float32")


def colorize(values: np.ndarray, cmap: str = FEATURE_COLORMAP) -> np.ndarray:
    """Values in ``[0, 1]`` (any shape) → uint8 RGB through a matplotlib colormap."""
    from matplotlib import colormaps

    rgba = colormaps[cmap](np.clip(values, 0, 1))
    return (rgba[..., :3] * 255 + 0.5).astype("uint8")


def resize(image: np.ndarray, height: int, width: int, smooth: bool = True) -> np.ndarray:
    """Resize a uint8 image or a float map (bilinear, or nearest when ``smooth`` is False).

    uint8 images of other than three channels (one, or four and more: a grey or multispectral
    photo) are resized channel by channel: Pillow would read four as RGBA and premultiply by
    the fourth, which is a band like the others here."""
    resample = Image.BILINEAR if smooth else Image.NEAREST
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] != 3:
        return np.stack([resize(image[..., k], height, width, smooth) for k in range(image.shape[-1])], axis=-1)
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((width, height), resample))
    return np.asarray(Image.fromarray(image.astype("float32"), mode="F").resize((width, height), resample))


def overlay(photo: np.ndarray, heat: np.ndarray, alpha: float = 0.45, cmap: str = CAM_COLORMAP) -> np.ndarray:
    """Blend a ``[0, 1]`` heatmap (at the photo's size) over the photo."""
    colored = colorize(heat, cmap).astype("float32")
    return (photo.astype("float32") * (1 - alpha) + colored * alpha + 0.5).astype("uint8")


def resize_channels(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a float ``(h, w, c)`` array channel by channel (bilinear)."""
    return np.stack([resize(values[..., i], height, width) for i in range(values.shape[-1])], axis=-1)


MAGNITUDE_PERCENTILE = 99.0  # a few pixels dominate a gradient's magnitude; they are clipped to white


def magnitude_image(values: np.ndarray) -> np.ndarray:
    """A map of magnitudes ``≥ 0`` as a grey uint8 RGB image: black is zero, white is the map's
    99th percentile and above (the clipping of Smilkov et al.'s SmoothGrad figures and code)."""
    top = float(np.percentile(values, MAGNITUDE_PERCENTILE)) if values.size else 0.0
    grey = np.clip(values / top, 0, 1) if top > 0 else np.zeros_like(values)
    return np.repeat((grey * 255 + 0.5).astype("uint8")[..., None], 3, axis=-1)


SIGNED_SPREAD = 0.1  # Selvaraju et al.'s display: ±5 standard deviations span black to white


def signed_image(values: np.ndarray) -> np.ndarray:
    """A signed RGB attribution ``(h, w, 3)`` as a uint8 image, as Selvaraju et al.'s Guided
    Grad-CAM code shows it: ``0.5 + 0.1 · v / std(v)``, clipped to ``[0, 1]``; without its
    mean shift, so that mid-grey is exactly zero."""
    std = float(values.std())
    scaled = 0.5 + SIGNED_SPREAD * values / std if std > 0 else np.full_like(values, 0.5)
    return (np.clip(scaled, 0, 1) * 255 + 0.5).astype("uint8")


def sheet_layout(count: int) -> tuple[int, int]:
    """``(columns, rows)`` of a near-square grid for ``count`` cells."""
    cols = max(1, math.ceil(math.sqrt(count)))
    return cols, max(1, math.ceil(count / cols))


def cell_size(height: int, lo: int = 48, hi: int = 112) -> int:
    """Feature-map cells: small maps are enlarged to stay visible, big ones shrunk."""
    return int(min(max(height, lo), hi))


def contact_sheet(cells: np.ndarray, gap: int = 0, background: int = 0) -> np.ndarray:
    """Tile ``(n, h, w, d)`` uint8 cells into one near-square grid, row-major."""
    n, h, w, depth = cells.shape
    cols, rows = sheet_layout(n)
    sheet = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, depth), background, dtype="uint8")
    for i in range(n):
        r, c = divmod(i, cols)
        sheet[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = cells[i]
    return sheet


def labelled_sheet(cells: np.ndarray, labels: list[str], gap: int = 4, strip: int = 16) -> np.ndarray:
    """``(n, h, w, 3)`` cells in a near-square grid on white, each with its label centred
    in a ``strip``-pixel band below it (Pillow's bundled font, so every machine draws the
    same pixels)."""
    n, h, w, _ = cells.shape
    pitch_y, pitch_x = h + strip + gap, w + gap
    cols, rows = sheet_layout(n)
    sheet = Image.new("RGB", (cols * pitch_x + gap, rows * pitch_y + gap), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=strip - 4)
    for i, (cell, label) in enumerate(zip(cells, labels)):
        r, c = divmod(i, cols)
        x, y = gap + c * pitch_x, gap + r * pitch_y
        sheet.paste(Image.fromarray(cell), (x, y))
        draw.text((x + w / 2, y + h + strip / 2), label, fill="black", font=font, anchor="mm")
    return np.asarray(sheet)


def feature_sheet(maps: np.ndarray) -> tuple[np.ndarray, int]:
    """``(h, w, c)`` activations → (a colormapped RGBA contact sheet, its cell size).

    Each channel is normalised on its own, so weak channels still show their pattern;
    the absolute scale lives in the manifest's per-channel ranges.
    """
    h, w, c = maps.shape
    size = cell_size(max(h, w))
    normed = normalize_channels(maps)
    cells = np.stack([
        colorize(resize(normed[..., i], size, size, smooth=False)) for i in range(c)
    ])
    sheet = contact_sheet(cells)
    # Cells past the last channel are see-through, not black: black reads as a dead channel.
    alpha = contact_sheet(np.full((c, size, size, 1), 255, dtype="uint8"))
    return np.concatenate([sheet, alpha], axis=-1), size


def with_transparency(image: np.ndarray, weight: np.ndarray, percentile: float) -> tuple[np.ndarray, float]:
    """``(RGBA uint8 image, scale)``: ``image`` with ``weight`` (``(h, w)``, at least 0) for
    alpha, linear up to ``scale``, the weight's ``percentile``, fully opaque above it (Fel et
    al.'s display of MACO's transparency). Where the percentile is 0 the maximum is the
    scale; a weight that is 0 everywhere leaves the image fully transparent."""
    scale = float(np.percentile(weight, percentile))
    top = scale if scale > 0 else float(weight.max())
    alpha = np.clip(weight / top, 0, 1) if top > 0 else np.zeros_like(weight)
    return np.concatenate([image, (alpha * 255 + 0.5).astype("uint8")[..., None]], axis=-1), scale


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def encode_jpeg(image: np.ndarray, quality: int = 88) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def animated_webp() -> bool:
    """Whether this Pillow writes animated WebP: before Pillow 11 that was a feature of its
    own (``webp_anim``), a build could have WebP without it; from 11 on, WebP has it."""
    return bool(features.check("webp")) and ("webp_anim" not in features.features or bool(features.check("webp_anim")))


def encode_animation(frames: np.ndarray, frame_ms: int = 400, hold_ms: int = 1600, quality: int = 90) -> bytes:
    """``(n, h, w, 3)`` uint8 frames → a looping animated WebP, its last frame held longer."""
    images = [Image.fromarray(frame) for frame in frames]
    durations = [frame_ms] * (len(images) - 1) + [hold_ms]
    buffer = io.BytesIO()
    images[0].save(buffer, format="WEBP", save_all=True, append_images=images[1:], duration=durations, loop=0,
                   quality=quality, method=4)
    return buffer.getvalue()


def decode_frames(data: bytes) -> np.ndarray:
    """Every frame of an animation, ``(n, h, w, 3)`` uint8."""
    with Image.open(io.BytesIO(data)) as image:
        frames = []
        for n in range(getattr(image, "n_frames", 1)):
            image.seek(n)
            frames.append(np.asarray(image.convert("RGB")))
    return np.stack(frames)


def to_rgb_uint8(img: Image.Image, max_side: int | None = None) -> np.ndarray:
    """Any Pillow image → uint8 RGB.

    EXIF orientation is honoured, transparency is composited over white, 16-bit samples
    are scaled from 0..65535, CMYK and palettes are converted, and images larger than
    ``max_side`` are shrunk keeping their aspect ratio.
    """
    img = ImageOps.exif_transpose(img)
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.LANCZOS)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype="float64")
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255 + 0.5, 0, 255).astype("uint8"), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"))
