"""Content-keyed tile cache with atomic, verified entries.

An entry is a payload file plus a JSON record holding the payload's digest and any
metadata (a filter's final activation, a feature sheet's layout). The record is
written last, so an entry exists only once its payload is complete; reading verifies
the digest, and a damaged entry is reported and treated as missing, so it is
recomputed instead of published.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def make_key(**parts) -> str:
    """A key from everything that determines an entry's content."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and ``os.replace``: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class Cache:
    def __init__(self, root):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self.damaged = 0
        self.stored = 0

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / "objects" / key[:2]
        return folder / f"{key}.bin", folder / f"{key}.json"

    def get(self, key: str) -> tuple[bytes, dict] | None:
        """``(payload, metadata)`` or ``None`` when absent or damaged."""
        data_path, record_path = self._paths(key)
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            data = data_path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError) as exc:
            return self._damaged(key, f"unreadable record ({exc})")
        if not isinstance(record, dict) or record.get("digest") != digest(data):
            return self._damaged(key, "payload does not match its digest")
        self.hits += 1
        return data, record.get("meta", {})

    def has(self, key: str) -> bool:
        return self._paths(key)[1].is_file()

    def put(self, key: str, data: bytes, meta: dict | None = None) -> None:
        data_path, record_path = self._paths(key)
        self.stored += 1
        write_atomic(data_path, data)
        record = {"digest": digest(data), "size": len(data), "meta": meta or {}}
        write_atomic(record_path, json.dumps(record, sort_keys=True).encode("utf-8"))

    def _damaged(self, key: str, why: str):
        self.damaged += 1
        self.misses += 1
        print(f"cache: entry {key[:12]} is damaged ({why}); recomputing it", file=sys.stderr)
        for path in self._paths(key):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        return None
