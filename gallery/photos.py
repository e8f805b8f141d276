"""Sample photos: the bundled default set, or the user's files and folders."""

from __future__ import annotations

import hashlib
import sys
import warnings
from dataclasses import dataclass, field
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


READER = "photo-reader-1"  # bump when read_photo's output for the same file changes


@dataclass(frozen=True, eq=False)
class Photo:
    """A sample photo, decoded only when its pixels are needed.

    Folders of thousands of photos are scanned without decoding them: the digest comes
    from the file's bytes, so a rebuild that finds every tile cached reads no pixels, and
    a build holds only one batch of decoded photos at a time.
    """

    name: str  # shown on pages; unique within a build
    digest: str
    path: Path | None = None
    array: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_array(cls, name: str, pixels: np.ndarray) -> "Photo":
        h = hashlib.blake2b(digest_size=16)
        h.update(str(pixels.shape).encode())
        h.update(np.ascontiguousarray(pixels).tobytes())
        return cls(name, h.hexdigest(), array=pixels)

    @classmethod
    def from_file(cls, name: str, path: Path) -> "Photo":
        h = hashlib.blake2b(READER.encode(), digest_size=16)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return cls(name, h.hexdigest(), path=path)

    @property
    def pixels(self) -> np.ndarray:
        """uint8 RGB ``(h, w, 3)``; decoded from the file on every call, never kept."""
        return self.array if self.array is not None else read_photo(self.path)


def default_photos() -> list[Photo]:
    import skimage.data

    return [Photo.from_array(DEFAULT_TITLES[name], getattr(skimage.data, name)()) for name in DEFAULT_SAMPLES]


def check_photo(path: Path) -> None:
    """Read a file's header only: it must be an image of a sane size. Decoding comes later."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path):
                pass
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise GalleryError(f"{str(path)!r} is not a readable image ({exc})") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise GalleryError(f"{str(path)!r} is too large ({exc})") from exc


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
    """Photos from files and folders (folders non-recursively, sorted by name), not yet decoded.

    Files inside folders that are not images are skipped with a warning; a file named
    directly that is not one is an error. A file whose header is fine but whose data is
    broken is found when it is decoded, and skipped then. Duplicate names get a suffix.
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
                    check_photo(file)
                    photos.append(Photo.from_file(_unique(file.stem, seen), file))
                except (GalleryError, OSError) as exc:
                    print(f"warning: skipping a photo: {exc}", file=sys.stderr)
        elif path.is_file():
            check_photo(path)
            photos.append(Photo.from_file(_unique(path.stem, seen), path))
        else:
            raise GalleryError(f"--images: {str(path)!r} is neither a file nor a folder")
    if not photos:
        raise GalleryError("none of the --images could be read")
    return photos


def _unique(name: str, seen: dict[str, int]) -> str:
    count = seen.get(name, 0)
    seen[name] = count + 1
    return name if count == 0 else f"{name}-{count + 1}"
