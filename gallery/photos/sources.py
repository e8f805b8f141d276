"""Sample photos: the bundled default set, or the user's files and folders."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..channels import from_array
from ..config import readable
from ..console import warn
from ..errors import GalleryError
from ..imaging import MAX_PIXELS, resize, to_rgb_uint8

MAX_SIDE = 1024  # photos are analysed at a few hundred pixels; larger ones are shrunk on load
# No photo within MAX_PIXELS is larger than this (16-bit RGBA, uncompressed), so a larger
# file is refused before its bytes are hashed: a stray disk image costs nothing.
MAX_FILE_BYTES = MAX_PIXELS * 8

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".npy"}
# Files read as arrays of any number of channels for a model that does not take RGB (or grey):
# NumPy's own format, and TIFF through tifffile (which scikit-image, a dependency, installs).
ARRAY_SUFFIXES = (".npy",)
BAND_TIFFS = (".tif", ".tiff")

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
    data: bytes | None = field(default=None, repr=False)  # the file's bytes, for a worker on another machine

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
        """uint8 RGB ``(h, w, 3)`` (an ``.npy`` file's own channels); decoded from the file on
        every call, never kept."""
        return self.read()

    def read(self, bands: bool = False) -> np.ndarray:
        """:attr:`pixels`; with ``bands``, a TIFF's own channels too (through tifffile), for a
        model whose channels are not RGB or grey."""
        if self.array is not None:
            return self.array
        source = io.BytesIO(self.data) if self.data is not None else self.path
        suffix = self.path.suffix.lower() if self.path is not None else ""
        if suffix in ARRAY_SUFFIXES or (bands and suffix in BAND_TIFFS):
            return read_array(source, self.path)
        return read_photo(source, self.path)

    def portable(self) -> "Photo":
        """This photo with its file's bytes in hand, so a process without the file can decode it."""
        if self.path is None or self.data is not None:
            return self
        try:
            data = self.path.read_bytes()
        except OSError:
            return self  # decoding will fail the same way, and say why, where it happens
        return replace(self, data=data)


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


def read_photo(path, shown: Path | None = None) -> np.ndarray:
    """Decode one image (a file's path, or its bytes as a file object) to uint8 RGB, or raise
    :class:`GalleryError` saying why not; ``shown`` names it in messages."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    path_shown = shown if shown is not None else path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.draft("RGB", (2 * MAX_SIDE, 2 * MAX_SIDE))  # JPEGs decode at reduced scale
                img.load()
                pixels = to_rgb_uint8(img, MAX_SIDE)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise GalleryError(f"{str(path_shown)!r} is not a readable image ({exc})") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise GalleryError(f"{str(path_shown)!r} is too large ({exc})") from exc
    if pixels.size == 0:
        raise GalleryError(f"{str(path_shown)!r} is an empty image")
    return pixels


def read_array(source, shown: Path) -> np.ndarray:
    """An ``.npy`` array or a TIFF's samples as uint8 ``(h, w, c)`` (see
    :func:`gallery.channels.from_array`), or :class:`GalleryError` saying why not."""
    try:
        if shown.suffix.lower() in ARRAY_SUFFIXES:
            array = np.load(source, allow_pickle=False)
        else:
            import tifffile

            array = tifffile.imread(source)
    except Exception as exc:  # numpy and tifffile raise ValueError, OSError and their own kinds
        raise GalleryError(f"{str(shown)!r} is not a readable array ({type(exc).__name__}: {exc})") from exc
    pixels = from_array(np.asarray(array), repr(str(shown)))
    h, w = pixels.shape[:2]
    if max(h, w) > MAX_SIDE:  # as large photos are: shrunk on load, keeping the aspect ratio
        scale = MAX_SIDE / max(h, w)
        pixels = resize(pixels, max(1, round(h * scale)), max(1, round(w * scale)))
    return pixels


def load_photos(paths) -> list[Photo]:
    """Photos from files and folders (folders non-recursively, sorted by name), not yet decoded.

    Entries of a folder that are not photos (other files, sub-folders, FIFOs and devices,
    hidden files) are skipped and listed in one warning; a file named directly that is
    not an image is an error. A file whose header is fine but whose data is broken is
    found when it is decoded, and skipped then. Names are unique within a build (see
    :func:`_unique`).
    """
    if not paths:
        return default_photos()
    photos: list[Photo] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = _folder_photos(path)
            if not files:
                raise GalleryError(f"folder {str(path)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            for file in files:
                try:
                    photos.append(_photo(file, seen))
                except (GalleryError, OSError) as exc:
                    warn(f"skipping a photo: {exc}")
        elif path.is_file():
            photos.append(_photo(path, seen))
        else:
            raise GalleryError(f"--images: {str(path)!r} is neither a file nor a folder")
    if not photos:
        raise GalleryError("none of the --images could be read")
    return photos


def _folder_photos(folder: Path) -> list[Path]:
    """The folder's photo files; one warning lists everything else and why it is skipped."""
    files, skipped = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            skipped.append(f"{entry.name!r} (hidden)")
        elif entry.is_dir():
            skipped.append(f"{entry.name + '/'!r} (a folder; folders are not searched)")
        elif not entry.is_file():
            skipped.append(f"{entry.name!r} (not a regular file)")
        elif entry.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(f"{entry.name!r} (not an image file name)")
        else:
            files.append(entry)
    if skipped:
        warn(f"skipping {len(skipped)} entries of {str(folder)!r}: " + ", ".join(skipped))
    return files


def _photo(path: Path, seen: set[str]) -> Photo:
    """A checked photo file, refused before its bytes are read if it is larger than any photo."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise GalleryError(f"{str(path)!r} is {size / 2**30:.1f} GiB, larger than any photo this build reads "
                           f"({MAX_FILE_BYTES / 2**20:.0f} MiB: {MAX_PIXELS / 1e6:.0f} Mpixel at 16 bits and 4 channels)")
    if path.suffix.lower() not in ARRAY_SUFFIXES:  # an array is checked when it is read
        check_photo(path)
    return Photo.from_file(_unique(path, seen), path)


def _unique(path: Path, seen: set[str]) -> str:
    """A display name no earlier photo of the build has: the stem, else the file name,
    else the file name with a number (``cat``, ``cat.jpg``, ``cat.jpg (2)``)."""
    stem, full = readable(path.stem), readable(path.name)
    name, n = stem, 1
    while name in seen:
        n += 1
        name = full if n == 2 else f"{full} ({n - 1})"
    seen.add(name)
    return name

