"""Safe, stable, collision-free file names for model, layer and photo names.

Two shapes of slug exist, and they cannot meet:

- a *plain* slug is the name itself, for names that are already lower-case
  ``[a-z0-9._-]``, not reserved and not shaped like a hashed slug;
- a *hashed* slug is a folded stem, ``-``, and at least 8 hex digits of a digest of the
  original name. Every hashed slug ends that way, and no plain slug does.

So plain slugs are distinct because their names are, and a plain slug never equals a
hashed one. Two hashed slugs could only meet on a digest collision; :func:`assign`
resolves even that by lengthening the digest, so the slugs of one set of names are
distinct by construction. Slugs are lower-case, so they stay distinct on
case-insensitive file systems too.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Iterable

MAX_STEM = 64
DIGEST_LENGTHS = (8, 16, 40)  # hex digits; longer ones only after a collision
_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_HASHED = re.compile(r"-[0-9a-f]{8,}$")
_RESERVED = {"index", "static", "photos", "layers", "manifest", "pool", "search.js", "status.js", "index.html"}


def _stem(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return _UNSAFE.sub("-", folded).strip("-").lstrip(".")[:MAX_STEM].rstrip(".")


def _hashed(text: str, stem: str, digits: int) -> str:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()
    return f"{stem or 'x'}-{digest[:digits]}"


def slug(name: str, digits: int = DIGEST_LENGTHS[0]) -> str:
    """A lower-case ``[a-z0-9._-]`` name that cannot traverse: plain or hashed (see above)."""
    text = str(name)
    stem = _stem(text)
    if stem == text and stem and stem not in _RESERVED and not _HASHED.search(stem):
        return stem
    return _hashed(text, stem, digits)


def assign(names: Iterable[str]) -> dict[str, str]:
    """``{name: slug}`` with distinct slugs for distinct names, whatever the names.

    Names are taken in sorted order, so the result does not depend on the order given;
    a hashed slug that meets an earlier one gets a longer digest.
    """
    taken: dict[str, str] = {}
    result: dict[str, str] = {}
    for name in sorted(set(map(str, names))):
        for digits in DIGEST_LENGTHS:
            candidate = slug(name, digits)
            if candidate not in taken:
                break
        else:  # a 160-bit digest collision: not a thing that happens
            raise RuntimeError(f"cannot give {name!r} a slug distinct from {taken[candidate]!r}")
        taken[candidate] = name
        result[name] = candidate
    return result
