"""Content-keyed tile cache with atomic, sealed entries.

An entry is a payload file plus a JSON record holding the entry's metadata (a filter's
activation, a feature sheet's layout) and a digest that seals the entry's key, the payload
*and* that metadata together, since all three are published: an entry moved or swapped
under another key fails its seal like an altered one. The record is written last, so an entry
exists only once its payload is complete. Reading checks the seal and the shape of the
metadata: an altered, truncated or misshapen entry is reported, removed and treated as
missing, so it is recomputed instead of published. Whatever stands where an entry
should be (a folder, a link, a FIFO, a file in place of a shard folder) is damage too, and
heals; only regular files are ever opened, and a payload larger than its record says is
not read at all.

The cache owns only what it names: ``objects/<2 hex>/<40 hex>.bin|json``. Anything else
found there is left alone, never followed, never counted. Two classes: :class:`CacheFolder`,
the folder it owns (its mark, claiming and sweeping it, listing and pruning what it holds),
and :class:`Cache`, the entry store in it. What reads caches older versions left lives in
:mod:`gallery.orchestrate.legacy`, until it ends.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from ..console import log
from ..errors import GalleryError
from ..folders import check_claimable, claim, folder_error, linked_folder, read_regular, remove, sweep, write_atomic
from . import legacy

# Records seal their key, payload and metadata; format 2 left the key out (a swapped entry
# passed as intact) and format 1 the metadata too.
FORMAT = 3
MAX_RECORD = 16 << 20  # a record is metadata: kilobytes; more is damage, not read whole
TAG = "CACHEDIR.TAG"
_TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
             "# This file is a cache directory tag created by cnn-gallery: tiles of its builds.\n"
             "# For information about cache directory tags see https://bford.info/cachedir/\n")
_KEY = re.compile(r"[0-9a-f]{40}")
_ENTRY = re.compile(r"([0-9a-f]{40})\.(bin|json)")


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def make_key(**parts) -> str:
    """A key from everything that determines an entry's content."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).hexdigest()


def seal(key: str, data: bytes, meta: dict, about: dict) -> str:
    """One digest over the key an entry is stored under, its payload and everything its
    record says about it: a payload and record moved together under another key fail it."""
    text = json.dumps({"key": key, "meta": meta, "about": about}, sort_keys=True, separators=(",", ":"))
    return digest(digest(data).encode("ascii") + text.encode("utf-8"))


def number(value: Any) -> bool:
    """A finite int or float (what a ``require`` check for a published figure wants)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class CacheFolder:
    """The folder a cache owns: its mark, claiming it, sweeping it, and what it holds as a
    whole (``--cache-info``, ``--prune``). It never reads an entry for its content."""

    def __init__(self, root):
        self.root = Path(root)

    def owned(self, folder: Path | None = None) -> bool:
        tag = (folder or self.root) / TAG
        try:
            return tag.is_file() and not tag.is_symlink() and "cnn-gallery" in tag.read_text("utf-8", "replace")
        except OSError:
            return False

    def _mark(self, folder: Path) -> None:
        write_atomic(folder / TAG, _TAG_TEXT.encode("ascii"))

    def _adopt(self, folder: Path) -> bool:
        """A cache written before caches were tagged (:func:`legacy.adopt_locked`), or one
        whose own mark was lost: ``objects/`` alone, holding the gallery's sealed
        entries. A mark that is there but damaged is explained, and left for the person to
        remove: nothing but the mark and ``objects/`` may stand beside it."""
        if legacy.adopt_locked(folder, self._mark):
            return True
        names = {e.name for e in os.scandir(folder)}
        tag = folder / TAG
        if not names <= {TAG, "objects"} or (TAG in names and (tag.is_symlink() or not tag.is_file())):
            return False
        sealed = self._sealed(folder)
        if not sealed:
            return False
        if TAG in names:
            raise GalleryError(
                f"--cache {str(folder)!r}: its mark {TAG} is damaged ({tag.stat().st_size} bytes, not the tag "
                f"cnn-gallery writes), yet objects/ holds cnn-gallery's sealed entries ({sealed} checked); to keep "
                f"them, delete the damaged mark (rm {shlex.quote(str(tag))}) and run again, which restores it; "
                "to start afresh, give --cache a new folder")
        self._mark(folder)
        log(f"cache {str(folder)!r} had lost its mark {TAG}; objects/ holds cnn-gallery's sealed entries "
            f"({sealed} checked), so the mark is written again")
        return True

    def check(self) -> None:
        """Refuse the folder now if :meth:`claim` would, writing nothing."""
        check_claimable(self.root, "--cache", self.owned, legacy.locked_cache)

    def _sealed(self, folder: Path, sample: int = 16) -> int:
        """How many of (up to) ``sample`` records under ``folder/objects`` are this cache's
        own sealed entries; 0 unless every one checked is: a foreign folder is never taken."""
        objects = folder / "objects"
        if objects.is_symlink() or not objects.is_dir():
            return 0
        checked = 0
        for shard in sorted(objects.iterdir()):
            if shard.is_symlink() or not shard.is_dir():
                continue
            for record_path in sorted(shard.glob("*.json")):
                match = _ENTRY.fullmatch(record_path.name)
                try:
                    record = json.loads(read_regular(record_path, MAX_RECORD))
                    data = read_regular(record_path.with_suffix(".bin"), record.get("size"))
                    if not match or record.get("digest") != seal(match.group(1), data, record.get("meta", {}),
                                                                 record.get("about", {})):
                        return 0
                except (OSError, ValueError, AttributeError, TypeError):
                    return 0
                checked += 1
                if checked == sample:
                    return checked
        return checked

    def claim(self) -> None:
        """Own the folder (see :func:`folders.claim`) and sweep its half-written files."""
        claim(self.root, "--cache", self.owned, self._mark, self._adopt)
        swept = sweep([self.root, self.root / "objects", *self._shards()], legacy=legacy.TEMP)
        if swept:
            log(f"removed {swept} half-written files left in {self.root} by an interrupted build")

    def _shards(self) -> list[Path]:
        """The shard folders: real folders named by two hex digits (links are not followed)."""
        objects = self.root / "objects"
        if objects.is_symlink() or not objects.is_dir():
            return []
        return sorted(Path(e.path) for e in os.scandir(objects)
                      if re.fullmatch(r"[0-9a-f]{2}", e.name) and e.is_dir(follow_symlinks=False))

    def _entries(self, damage: bool = False) -> dict[str, dict[str, os.DirEntry]]:
        """``{key: {"bin"|"json": entry}}`` for every regular file the cache named, and
        nothing else; with ``damage``, also the links, FIFOs and such standing at its names
        (for ``--prune`` to remove, never to count as entries)."""
        found: dict[str, dict] = defaultdict(dict)
        for shard in self._shards():
            for entry in os.scandir(shard):
                match = _ENTRY.fullmatch(entry.name)
                if match and match.group(1)[:2] == shard.name and (
                        entry.is_file(follow_symlinks=False) or (damage and not entry.is_dir(follow_symlinks=False))):
                    found[match.group(1)][match.group(2)] = entry
        return found

    def records(self):
        """``(key, record)`` for every entry with a record; ``{}`` where it cannot be read."""
        for key, files in sorted(self._entries().items()):
            if "json" not in files:
                continue
            try:
                record = json.loads(read_regular(Path(files["json"].path), MAX_RECORD))
            except (OSError, ValueError):
                record = {}
            yield key, record if isinstance(record, dict) else {}

    def info(self) -> dict:
        """Entries and bytes by kind and by model fingerprint; sizes are measured, not read."""
        by_kind: dict = defaultdict(lambda: [0, 0])
        by_model: dict = defaultdict(lambda: [0, 0])
        entries = self._entries()
        for key, record in self.records():
            about = record.get("about") if isinstance(record.get("about"), dict) else {}
            size = sum(f.stat(follow_symlinks=False).st_size for f in entries[key].values())
            for table, name in ((by_kind, about.get("kind", "unknown")), (by_model, about.get("model", "none"))):
                table[str(name)][0] += 1
                table[str(name)][1] += size
        return {"kinds": dict(by_kind), "models": dict(by_model)}

    def report(self) -> str:
        """What ``--cache-info`` prints."""
        if self.root.is_dir() and any(os.scandir(self.root)) and not (self.owned() or legacy.locked_cache(self.root)):
            raise GalleryError(f"--cache {str(self.root)!r} is not a cnn-gallery cache (it has no {TAG} of ours)")
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
        """Delete every entry not in ``keep``, payloads left without a record included;
        return ``(entries, bytes)`` removed. Files the cache did not name are not touched."""
        removed = freed = 0
        for key, files in self._entries(damage=True).items():
            if key in keep:
                continue
            for entry in files.values():
                freed += entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.path)  # a link is removed, never what it points to
            removed += 1
        return removed, freed


class Cache(CacheFolder):
    """The entry store in a cache folder: sealed entries read, written and amended by key,
    damage healed as it is met, and what this build used and computed counted."""

    def __init__(self, root):
        super().__init__(root)
        self.hits = 0
        self.damaged = 0
        self.stored = 0
        self.outdated = 0  # entries in an older record format: removed and recomputed, like damage
        # Keys read back intact or written by this build: what ``--prune`` keeps. A pass
        # that fills several entries at once (peaks with their sheet, CAMs with their
        # contributions) is rerun when any one is lost; its other entries, already here,
        # are then left as they are, neither rewritten nor counted as computed.
        self.used: set[str] = set()

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a cache key: {key!r}")
        folder = self.root / "objects" / key[:2]
        return folder / f"{key}.bin", folder / f"{key}.json"

    def get(self, key: str, require: dict[str, Callable[[Any], bool]] | None = None) -> tuple[bytes, dict] | None:
        """``(payload, metadata)``, or ``None`` when absent or damaged.

        ``require`` maps metadata fields to checks their values must pass; an entry that
        fails one is damaged (an older schema, or a record edited by hand).
        """
        data_path, record_path = self._paths(key)
        if self._linked(key):
            return None
        try:
            record = json.loads(read_regular(record_path, MAX_RECORD))
            if not isinstance(record, dict) or not isinstance(record.get("meta", {}), dict):
                return self._damaged(key, "its record is not an entry record")
            if record.get("format") != FORMAT:
                # Older records did not seal their key, so an entry moved or swapped under
                # another key read as intact; they are recomputed rather than trusted.
                return self._damaged(key, "its record is in an older format", quiet=True)
            size = record.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                return self._damaged(key, "its record gives no payload size")
            data = read_regular(data_path, size)  # refused unread when larger than its record says
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # a folder, a link, a FIFO, a file where the shard folder goes
            return self._damaged(key, f"unreadable ({type(exc).__name__})")
        meta, about = record.get("meta", {}), record.get("about", {})
        if record.get("digest") != seal(key, data, meta, about):
            return self._damaged(key, "payload, metadata or key does not match its digest")
        bad = [name for name, check in (require or {}).items() if not check(meta.get(name))]
        if bad:
            return self._damaged(key, f"its metadata lacks a valid {', '.join(bad)}")
        if key not in self.used:  # read twice (a thumbnail's source), reused once
            self.hits += 1
        self.used.add(key)
        return data, meta

    def put(self, key: str, data: bytes, meta: dict | None = None, about: dict | None = None) -> None:
        """Store a payload; ``about`` (kind, model, …) is kept for ``--cache-info``. A key
        already known valid in this build is kept: keys name their content."""
        if key in self.used:
            return
        data_path, record_path = self._paths(key)
        try:
            self._clear_way(data_path.parent)
            for path in (data_path, record_path):
                if path.is_symlink() or path.is_dir():
                    remove(path)
            write_atomic(data_path, data)
            self._write_record(key, data, meta or {}, about or {})
        except OSError as exc:  # a full disk, a read-only mount: one line, and the entry stays absent
            raise folder_error(exc, "--cache", self.root) from exc
        self.stored += 1
        self.used.add(key)

    def amend(self, key: str, extra: dict) -> dict:
        """Add ``extra`` to an intact entry's metadata and reseal its record; the payload
        file is left as it is. Returns the new metadata. For figures computed later from a
        payload (a tile's peak), so the entry is not counted as computed again."""
        data_path, record_path = self._paths(key)
        if self._linked(key):
            return None
        try:
            record = json.loads(read_regular(record_path, MAX_RECORD))
            meta = {**record.get("meta", {}), **extra}
            data = read_regular(data_path, record.get("size"))
            self._write_record(key, data, meta, record.get("about", {}), record.get("created"))
        except OSError as exc:
            raise folder_error(exc, "--cache", self.root) from exc
        return meta

    def _linked(self, key: str) -> bool:
        """Whether the entry is reached through a link or a file where a folder goes: then it
        is not the cache's own, and is damage (removed, and recomputed)."""
        linked = linked_folder(self.root, self._paths(key)[0])
        if linked is not None:
            self._damaged(key, f"{str(linked)!r} is a link or a file, not a folder")
        return linked is not None

    def _write_record(self, key: str, data: bytes, meta: dict, about: dict, created=None) -> None:
        record = {"format": FORMAT, "digest": seal(key, data, meta, about), "size": len(data), "meta": meta,
                  "about": about, "created": created if number(created) else round(time.time())}
        write_atomic(self._paths(key)[1], json.dumps(record, sort_keys=True).encode("utf-8"))

    def _clear_way(self, shard: Path) -> None:
        """Shard and ``objects`` must be real folders; anything else there is damage."""
        for folder in (shard.parent, shard):
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                log(f"cache: {str(folder)!r} is not a folder; replacing it")
                remove(folder)
        shard.mkdir(parents=True, exist_ok=True)

    def _damaged(self, key: str, why: str, quiet: bool = False):
        """Remove a damaged entry; ``quiet`` for an expected kind (an older format), which
        the build sums up in one line rather than one per entry."""
        if quiet:
            self.outdated += 1
        else:
            self.damaged += 1
            log(f"cache: entry {key[:12]} is damaged ({why}); recomputing it")
        data_path, record_path = self._paths(key)
        for folder in (data_path.parent.parent, data_path.parent):
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                remove(folder)  # a file or link where a folder goes: the entry was never reachable
                break
        else:
            for path in (data_path, record_path):
                remove(path)
        return None
