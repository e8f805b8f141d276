"""A model's input channels: how photos become them, and how images of them are shown.

Pure numpy. An RGB model (3 channels) is the gallery's first case and passes through every
function here unchanged, and names nothing in cache keys, so its outputs are those of a
build before other channel counts existed. Other counts:

* one channel (digits, documents, X-rays): a colour photo becomes its luminance, ITU-R
  BT.601's ``Y = 0.299 R + 0.587 G + 0.114 B`` (the weights of Pillow's ``"L"`` mode), so a
  grey photo saved as RGB keeps its grey values exactly; images are shown in grey.
* two, or more than three (RGBA, RGB plus depth, multispectral bands): photos must carry the
  channels themselves (``.npy`` arrays of shape ``H×W×C``, or TIFFs); images are shown as a
  natural-colour view of the three channels named red, green and blue (:attr:`Channels.rgb`,
  the first three unless told), beside a strip of every channel in grey. A model with two
  channels has no three to name, so its view is its first channel, in grey.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import GalleryError

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luminance weights, as Pillow's RGB → "L"
# What a pixel removed from a photo becomes (gallery.photos.faithfulness): ImageNet's mean RGB,
# its luminance for one channel, and mid-grey for channels that are not named red, green or blue.
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
MID = 127.5
# Suffixes of files that carry any number of channels (see gallery.photos.sources).
BAND_SUFFIXES = (".npy", ".tif", ".tiff")


@dataclass(frozen=True)
class Channels:
    """``count`` input channels; ``rgb``: the three shown as red, green and blue (``None``
    for fewer than three, shown in grey)."""

    count: int = 3
    rgb: tuple[int, int, int] | None = (0, 1, 2)

    @classmethod
    def of(cls, count: int, rgb=None, title: str = "model") -> "Channels":
        """The channels of a ``count``-channel model, ``rgb`` (three indices, or ``None`` for
        the default: the first three) validated against the count, in one line."""
        if not isinstance(count, int) or count < 1:
            raise GalleryError(f"{title!r} takes {count!r}-channel images; an image model takes 1 or more channels")
        if rgb is not None:
            rgb = tuple(rgb)
            if count < 3:
                raise GalleryError(f"--rgb-channels {','.join(map(str, rgb))}: {title!r} takes {count}-channel images, "
                                   "fewer than three to show as red, green and blue")
            if len(rgb) != 3 or len(set(rgb)) != 3 or not all(isinstance(i, int) and 0 <= i < count for i in rgb):
                raise GalleryError(f"--rgb-channels {','.join(map(str, rgb))}: expected three different channel "
                                   f"indices from 0 to {count - 1} ({title!r} takes {count}-channel images)")
        elif count >= 3:
            rgb = (0, 1, 2)
        return cls(count, rgb)

    @property
    def plain(self) -> bool:
        """RGB, shown as it is: the case every function here leaves untouched."""
        return self.count == 3 and self.rgb == (0, 1, 2)

    @property
    def banded(self) -> bool:
        """Whether images are shown as a view plus a strip of every channel (2, or 4 and more)."""
        return self.count not in (1, 3)

    def key(self) -> dict:
        """What cache keys name: nothing for plain RGB (its keys predate other counts)."""
        if self.plain:
            return {}
        return {"channels": self.count, **({"rgb": list(self.rgb)} if self.rgb and self.count > 3 else {})}

    def describe(self) -> str:
        """How the pages name the channels and their view."""
        if self.count == 1:
            return "1 channel (grey)"
        if self.rgb is None:
            return f"{self.count} channels, shown as channel 0 in grey"
        if self.count == 3 and self.plain:
            return "3 channels (RGB)"
        return f"{self.count} channels, shown as RGB from channels {', '.join(map(str, self.rgb))}"

    def photo_note(self) -> str:
        """What a photo page shows for a photo, and what its maps are drawn over."""
        if self.count == 1:
            return ("The photo as this 1-channel model sees it: its luminance, Y = 0.299 R + 0.587 G + 0.114 B "
                    "(ITU-R BT.601). Every map below is drawn over it, in grey.")
        if self.rgb is None:
            return (f"This model takes {self.count} channels, fewer than three to show as colour: the photo is "
                    "its channel 0, in grey, and every map below is drawn over it.")
        return (f"This model takes {self.count} channels: the photo shows channels {', '.join(map(str, self.rgb))} "
                "as red, green and blue, and every map below is drawn over that view.")

    def fill_note(self) -> str:
        """What a pixel removed by the faithfulness figures becomes (:meth:`fill`), in words."""
        if self.count == 1:
            return "the luminance of ImageNet's mean colour"
        if self.rgb is None:
            return "mid-grey"
        return "ImageNet's mean colour on the channels shown as RGB and mid-grey on the others"

    def photo(self, pixels: np.ndarray, name: str = "a photo") -> np.ndarray:
        """A uint8 photo ``(h, w)`` or ``(h, w, k)`` as the model's ``(h, w, count)`` channels;
        RGB photos become their luminance for one channel. Raises for a photo that cannot be."""
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        k = pixels.shape[-1]
        if k == self.count:
            return pixels
        if self.count == 1 and k == 3:
            return luminance(pixels)[..., None]
        if self.count == 3 and k == 1:
            return np.repeat(pixels, 3, axis=-1)
        raise GalleryError(f"{name} has {k} channels; the model takes {self.count}: give .npy arrays of shape "
                           f"H×W×{self.count} (or TIFFs with {self.count} channels)")

    def view(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(…, count)`` images → the ``(…, 3)`` RGB a page shows: themselves for RGB,
        grey for one channel (or two), the named three for more."""
        if self.plain:
            return images
        if self.rgb is None:
            return np.repeat(images[..., :1], 3, axis=-1)
        return images[..., list(self.rgb)]

    def grey(self, images: np.ndarray) -> np.ndarray:
        """The one channel of ``(…, 1)`` images as ``(…)`` grey, what a grey PNG holds."""
        return images[..., 0]

    def fill(self) -> tuple[float, ...]:
        """Per channel, what a removed pixel becomes (gallery.photos.faithfulness)."""
        if self.plain:
            return IMAGENET_MEAN_RGB
        if self.count == 1:
            return (float(np.dot(LUMA, IMAGENET_MEAN_RGB)),)
        fill = [MID] * self.count
        for i, value in zip(self.rgb or (), IMAGENET_MEAN_RGB):
            fill[i] = value
        return tuple(fill)


RGB = Channels()


def luminance(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``(…, 3)`` RGB → uint8 ``(…)`` luminance ``Y = 0.299 R + 0.587 G + 0.114 B``, rounded."""
    y = rgb.astype("float64") @ np.asarray(LUMA)
    return np.clip(np.round(y), 0, 255).astype("uint8")


def strip(image: np.ndarray) -> np.ndarray:
    """A uint8 ``(h, w, c)`` image as one grey ``(h, c·w)`` strip, channel ``k`` in columns
    ``k·w`` to ``(k + 1)·w``: lossless, so the strip is also the download of every channel."""
    h, w, c = image.shape
    return np.ascontiguousarray(image.transpose(0, 2, 1).reshape(h, c * w))


def unstrip(grey: np.ndarray, count: int) -> np.ndarray:
    """:func:`strip`'s inverse: ``(h, count·w)`` → ``(h, w, count)``."""
    h, width = grey.shape
    return grey.reshape(h, count, width // count).transpose(0, 2, 1)


def from_array(array: np.ndarray, name: str) -> np.ndarray:
    """A photo read from a file that carries its channels (``.npy``, TIFF) as uint8
    ``(h, w, c)``: values must lie in 0–255 (any numeric type; rounded)."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or not all(array.shape) or not (np.issubdtype(array.dtype, np.integer)
                                                      or np.issubdtype(array.dtype, np.floating)):
        raise GalleryError(f"{name} holds a {array.dtype} array of shape {array.shape}; expected numbers of shape "
                           "H×W×C (channels last) or H×W")
    if array.dtype != np.uint8:
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo and hi <= 255):
            raise GalleryError(f"{name} holds values from {lo:g} to {hi:g}; expected values from 0 to 255 "
                               "(scale the array to that range)")
        array = np.round(array).astype("uint8")
    return array
