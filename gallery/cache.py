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
import time
from collections import defaultdict
from pathlib import Path

from .errors import GalleryError

try:
    import fcntl
except ImportError:  # not POSIX: builds are not locked against each other
    fcntl = None

TEMP_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def make_key(**parts) -> str:
    """A key from everything that determines an entry's content."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).hexdigest()


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write via a temporary file in the same folder and ``os.replace``: never half a file.

    ``durable`` also flushes the bytes to disk before the rename, so even a power cut
    cannot leave an empty file under the final name; a killed process cannot either way.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files must be readable
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
        # Keys read back intact or written by this build: what ``--prune`` keeps. A pass
        # that fills several entries at once (peaks with their sheet, CAMs with their
        # contributions) is rerun when any one is lost; its other entries, already here,
        # are then left as they are, neither rewritten nor counted as computed.
        self.used: set[str] = set()

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
        if key not in self.used:  # read twice (a thumbnail's source), reused once
            self.hits += 1
        self.used.add(key)
        return data, record.get("meta", {})

    def has(self, key: str) -> bool:
        return self._paths(key)[1].is_file()

    def put(self, key: str, data: bytes, meta: dict | None = None, about: dict | None = None) -> None:
        """Store a payload; ``about`` (kind, model, …) is kept for ``--cache-info``. A key
        already known valid in this build is kept: keys name their content."""
        if key in self.used:
            return
        data_path, record_path = self._paths(key)
        self.stored += 1
        self.used.add(key)
        write_atomic(data_path, data)
        record = {"digest": digest(data), "size": len(data), "meta": meta or {}, "about": about or {},
                  "created": round(time.time())}
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

    def records(self):
        """``(key, record)`` for every entry whose record can be read."""
        for record_path in sorted((self.root / "objects").glob("*/*.json")):
            try:
                yield record_path.stem, json.loads(record_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                yield record_path.stem, {}

    def info(self) -> dict:
        """Entries and bytes by kind and by model fingerprint."""
        by_kind: dict = defaultdict(lambda: [0, 0])
        by_model: dict = defaultdict(lambda: [0, 0])
        for _, record in self.records():
            about = record.get("about", {}) if isinstance(record, dict) else {}
            size = int(record.get("size", 0)) if isinstance(record, dict) else 0
            for table, name in ((by_kind, about.get("kind", "unknown")), (by_model, about.get("model", "none"))):
                table[name][0] += 1
                table[name][1] += size
        return {"kinds": dict(by_kind), "models": dict(by_model)}

    def report(self) -> str:
        """What ``--cache-info`` prints."""
        info = self.info()
        lines = [f"cache {self.root}"]
        for title, table in (("by kind", info["kinds"]), ("by model fingerprint", info["models"])):
            lines.append(f"  {title}:")
            for name, (count, size) in sorted(table.items(), key=lambda kv: -kv[1][1]):
                lines.append(f"    {name[:16]:<16} {count:>8} entries {size / 1e6:>10.2f} MB")
        if not info["kinds"]:
            lines.append("  (empty)")
        return "\n".join(lines)

    def prune(self, keep: set[str]) -> tuple[int, int]:
        """Delete every entry not in ``keep``; return ``(entries, bytes)`` removed."""
        removed = freed = 0
        for key, record in list(self.records()):
            if key in keep:
                continue
            freed += int(record.get("size", 0)) if isinstance(record, dict) else 0
            for path in self._paths(key):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            removed += 1
        return removed, freed


def sweep_temporaries(folder: Path) -> int:
    """Remove half-written files that a killed build left behind; call with the lock held."""
    count = 0
    if Path(folder).is_dir():
        for path in Path(folder).rglob(f".*{TEMP_SUFFIX}"):
            try:
                path.unlink()
                count += 1
            except OSError:
                pass
    return count


class FolderLock:
    """An exclusive lock on a folder for the length of a build.

    ``flock`` is released by the kernel when the process dies, even by ``kill -9``, so a
    crashed build never leaves a stale lock behind.
    """

    NAME = ".cnn-gallery.lock"

    def __init__(self, folder, role: str):
        self.folder = Path(folder)
        self.role = role
        self.fd = None

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self
        path = self.folder / self.NAME
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode("ascii", "replace").strip() or "?"
            os.close(self.fd)
            self.fd = None
            raise GalleryError(
                f"another build (pid {holder}) holds the {self.role} folder {str(self.folder)!r}; "
                f"wait for it to finish, or use another {'--out' if self.role == 'output' else '--cache'}"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode("ascii"), 0)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None
