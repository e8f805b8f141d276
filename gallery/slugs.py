"""Safe, stable, collision-free file names for model, layer and photo names."""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_STEM = 64
_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_RESERVED = {"index", "static", "photos", "layers", "manifest", "pool"}


def slug(name: str) -> str:
    """A lower-case ``[a-z0-9._-]`` name that cannot traverse and keeps distinct names apart.

    A name that is already safe is kept as it is; any other gets a short hash of the
    original appended, so ``"a/b"`` and ``"a b"`` never share a file. Leading dots are
    removed (no ``..`` or hidden files), and the stem is capped in length.
    """
    text = str(name)
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    stem = _UNSAFE.sub("-", folded).strip("-").lstrip(".")[:MAX_STEM].rstrip(".")
    if stem == text and stem and stem not in _RESERVED:
        return stem
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return f"{stem or 'x'}-{digest}"
