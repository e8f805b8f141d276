"""Scoring filter tiles from their saved 8-bit pixels, by a path independent of the renderer.

Used by the faithfulness tests and by ``bench/filters.py``, so every method's tiles are
scored the same way: decoded pixels → caffe preprocessing (written out here, not the
gallery's) → the model up to the layer's input (a plain ``keras.Model``) → the layer's
convolution with its own kernel and bias, without its activation (the pre-activation).

- *plain*: the mean pre-activation of the tile as saved;
- *robust*: the same, averaged over 16 fixed random jitters, scales and rotations (grey
  fill), the transformations a tile should survive if its pattern is really there;
- *peak*: the strongest unit anywhere in the map;
- *interior*, *per unit area*: for first layers, the response with the tile's edges left
  out, and the response per unit area of an image that repeats the tile;
- *HF*: the share of the tile's spectral power above half the Nyquist frequency (radial
  frequency over 0.25 cycles per pixel, the mean of each channel removed); white noise
  scores 0.80, smooth images near 0.
"""

from __future__ import annotations

import io

import keras
import numpy as np
from keras import ops
from PIL import Image

CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype="float32")
ROBUST_VIEWS = 16


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


class Scorer:
    """Pre-activations of one conv layer of a caffe-preprocessed model (or, with
    ``caffe=False``, of a model that takes 0–255 RGB), from uint8 RGB images."""

    def __init__(self, model: keras.Model, layer: str, caffe: bool = True):
        self.conv = model.get_layer(layer)
        self.to_input = keras.Model(model.input, self.conv.input)
        self.caffe = caffe

    def preactivation(self, images: np.ndarray, channels, strides=None, padding=None) -> np.ndarray:
        """``(n, h, w)``: image ``i``'s map of channel ``channels[i]``, before the activation."""
        x = images.astype("float32")
        if self.caffe:
            x = x[..., ::-1] - CAFFE_MEAN_BGR  # RGB→BGR, ImageNet means off
        # ``call`` skips the Input's fixed size, as the gallery's own sub-models do.
        features = self.to_input.call(ops.convert_to_tensor(x, "float32"), training=False)
        z = ops.conv(features, self.conv.kernel, strides=strides or self.conv.strides,
                     padding=padding or self.conv.padding)
        z = ops.convert_to_numpy(z + self.conv.bias if self.conv.use_bias else z)
        return np.stack([z[i, :, :, c] for i, c in enumerate(channels)])

    def plain(self, images, channels) -> np.ndarray:
        return self.preactivation(images, channels).mean(axis=(1, 2))

    def peak(self, images, channels) -> np.ndarray:
        return self.preactivation(images, channels).max(axis=(1, 2))

    def interior(self, images, channels) -> np.ndarray:
        """The mean over every placement of the window wholly inside the tile (stride 1,
        no padding): the response with the tile's edges left out."""
        return self.preactivation(images, channels, strides=1, padding="valid").mean(axis=(1, 2))

    def per_unit_area(self, images, channels) -> np.ndarray:
        """For a layer linear in the pixels: the mean response per unit area of an image
        that repeats the tile, every placement of the window counted (stride 1). Linearity
        makes it the response to the tile's mean colour, read here on a flat patch."""
        side = 2 * max(self.conv.kernel_size)
        flat = np.broadcast_to(images.astype("float64").mean(axis=(1, 2), keepdims=True),
                               (len(images), side, side, 3))
        return self.interior(flat, channels)

    def robust(self, images, channels, seed: int = 0) -> np.ndarray:
        views = [self.plain(view, channels) for view in _views(images, seed)]
        return np.mean(views, axis=0)


def _views(images: np.ndarray, seed: int):
    """16 fixed transformations of a batch: jitter ±8 px, scale 0.9–1.1, rotation ±10°."""
    rng = np.random.default_rng(seed)
    n, h, w, _ = images.shape
    for _ in range(ROBUST_VIEWS):
        angle = np.deg2rad(rng.uniform(-10, 10))
        scale = rng.uniform(0.9, 1.1)
        dy, dx = rng.integers(-8, 9, size=2)
        cy, cx = (h - 1) / 2, (w - 1) / 2
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        # Output (x, y) → input: rotate and scale about the centre, then shift.
        matrix = [cos, -sin, cx - cos * cx + sin * cy + dx, sin, cos, cy - sin * cx - cos * cy + dy, 0, 0]
        warped = ops.image.affine_transform(images.astype("float32"), np.tile(np.float32(matrix), (n, 1)),
                                            interpolation="bilinear", fill_mode="constant", fill_value=127.5)
        yield np.clip(np.round(ops.convert_to_numpy(warped)), 0, 255).astype("uint8")


def high_frequency(images: np.ndarray) -> np.ndarray:
    """Per image, the share of spectral power at radial frequencies over 0.25 cycles/pixel."""
    n, h, w, _ = images.shape
    x = images.astype("float64")
    x -= x.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2).sum(axis=-1)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    high = np.sqrt(fx * fx + fy * fy) > 0.25
    return power[:, high].sum(axis=1) / np.maximum(power.reshape(n, -1).sum(axis=1), 1e-12)
