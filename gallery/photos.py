"""Sample photos: the bundled default set, or the user's files and folders."""

from __future__ import annotations

import hashlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import GalleryError
from .imaging import MAX_PIXELS, to_rgb_uint8

MAX_SIDE = 1024  # photos are analysed at a few hundred pixels; larger ones are shrunk on load

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

# CC0 / public-domain photos that scikit-image ships inside its wheel, so the default
# gallery works offline.
DEFAULT_SAMPLES = ("chelsea", "coffee", "rocket", "astronaut")
DEFAULT_TITLES = {"chelsea": "cat", "coffee": "coffee", "rocket": "rocket", "astronaut": "astronaut"}


@dataclass(frozen=True)
class Photo:
    name: str  # shown on pages; unique within a build
    pixels: np.ndarray  # uint8 RGB (h, w, 3)

    @property
    def digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(str(self.pixels.shape).encode())
        h.update(np.ascontiguousarray(self.pixels).tobytes())
        return h.hexdigest()


def default_photos() -> list[Photo]:
    import skimage.data

    return [Photo(DEFAULT_TITLES[name], getattr(skimage.data, name)()) for name in DEFAULT_SAMPLES]


def read_photo(path: Path) -> np.ndarray:
    """Decode one image file to uint8 RGB, or raise :class:`GalleryError` saying why not."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.draft("RGB", (2 * MAX_SIDE, 2 * MAX_SIDE))  # JPEGs decode at reduced scale
                img.load()
                pixels = to_rgb_uint8(img, MAX_SIDE)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise GalleryError(f"{str(path)!r} is not a readable image ({exc})") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise GalleryError(f"{str(path)!r} is too large ({exc})") from exc
    if pixels.size == 0:
        raise GalleryError(f"{str(path)!r} is an empty image")
    return pixels


def load_photos(paths) -> list[Photo]:
    """Photos from files and folders (folders non-recursively, sorted by name).

    Unreadable files inside folders are skipped with a warning; a file named directly
    that cannot be read is an error. Duplicate names get a numeric suffix.
    """
    if not paths:
        return default_photos()
    photos: list[Photo] = []
    seen: dict[str, int] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            entries = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
            for other in sorted(set(entries) - set(files)):
                print(f"warning: skipping {str(other)!r}: not an image file name "
                      f"({', '.join(sorted(IMAGE_SUFFIXES))})", file=sys.stderr)
            if not files:
                raise GalleryError(f"folder {str(path)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            for file in files:
                try:
                    photos.append(Photo(_unique(file.stem, seen), read_photo(file)))
                except GalleryError as exc:
                    print(f"warning: skipping a photo: {exc}", file=sys.stderr)
        elif path.is_file():
            photos.append(Photo(_unique(path.stem, seen), read_photo(path)))
        else:
            raise GalleryError(f"--images: {str(path)!r} is neither a file nor a folder")
    if not photos:
        raise GalleryError("none of the --images could be read")
    return photos


def _unique(name: str, seen: dict[str, int]) -> str:
    count = seen.get(name, 0)
    seen[name] = count + 1
    return name if count == 0 else f"{name}-{count + 1}"
