"""The published folder: what the build owns in it, and nothing else.

The folder carries an inventory, ``.cnn-gallery-site.json``: for each model, the files
the build wrote for it (all under its own folder), and the files shared by the whole
site (``index.html``, ``search.js``, ``static/…``). The build writes only those paths,
and removes an owned file once no model's manifest lists it, so the folder holds exactly
what its manifests list, plus whatever else a person put there, untouched.

Every new path is entered in the inventory *before* it is written, so a build killed
at any moment leaves no file the next build does not know to be its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath

from ..console import log
from ..errors import GalleryError
from ..folders import LEGACY_LOCK, check_claimable, claim, folder_error, linked_folder, read_regular, remove, sweep, write_atomic
from .records import Manifest, ManifestError, read
from .slugs import slug

INVENTORY = ".cnn-gallery-site.json"
GENERATOR = "cnn-gallery"
SHARED_FILES = ("index.html", "search.js", "status.js")
SHARED_FOLDERS = ("static",)
_FOLDER = re.compile(r"[a-z0-9][a-z0-9._-]*")  # the shape of every slug
MAX_INVENTORY = 256 << 20  # bookkeeping files are read whole: far above any real site's
MAX_MANIFEST = 1 << 30


def identity(source: str) -> str:
    """A short digest naming a model's source, so the inventory never shows local paths."""
    return hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _safe(path: str) -> bool:
    """A relative POSIX path without ``..``, as every path the build writes is."""
    parts = PurePosixPath(path).parts
    return bool(parts) and not PurePosixPath(path).is_absolute() and ".." not in parts and "\\" not in path


class SiteFolder:
    def __init__(self, root):
        self.root = Path(root)
        self.models: dict[str, dict] = {}  # slug -> {"identity": str | None, "files": set[str]}
        self.shared: set[str] = set()
        self._written: dict[str, str] = {}  # path -> digest of the bytes this build last wrote there
        # Paths the build wants that hold something it did not write (a person's file, a
        # link, anything below a linked folder): never written, never removed.
        self.foreign: set[str] = set()
        self._told: set[Path] = set()
        self._parsed: dict[str, tuple[str, Manifest]] = {}  # model -> (digest of its manifest.json, parsed)

    # ownership ---------------------------------------------------------------------

    def owned(self, folder: Path) -> bool:
        path = folder / INVENTORY
        try:
            return json.loads(read_regular(path, MAX_INVENTORY)).get("generator") == GENERATOR
        except (OSError, ValueError, AttributeError):
            return False

    def _mark(self, folder: Path) -> None:
        self.save()

    def _adopt(self, folder: Path) -> bool:
        """A site written before inventories: its old lock file beside ``search.js`` and ``static/``.

        Its model folders (those holding a manifest) and shared files become owned as
        they stand; the lock file, which must not be published, goes.
        """
        if not self.adoptable(folder):
            return False
        for manifest in folder.glob("*/manifest.json"):
            files = {p.relative_to(folder).as_posix() for p in manifest.parent.rglob("*") if p.is_file()}
            self.models[manifest.parent.name] = {"identity": None, "files": files}
        self.shared = {p.relative_to(folder).as_posix() for p in (folder / "static").rglob("*") if p.is_file()}
        self.shared |= {name for name in SHARED_FILES if (folder / name).is_file()}
        self.save()
        (folder / LEGACY_LOCK).unlink()
        return True

    @staticmethod
    def adoptable(folder: Path) -> bool:
        names = {e.name for e in os.scandir(folder)}
        return LEGACY_LOCK in names and (names == {LEGACY_LOCK} or all(
            (folder / name).is_file() for name in ("search.js", "static/site.js")))

    def check(self) -> None:
        """Refuse the folder now if :meth:`claim` would, writing nothing."""
        check_claimable(self.root, "--out", self.owned, self.adoptable)

    def claim(self) -> None:
        """Own the folder or refuse it (see :func:`folders.claim`); load the inventory;
        sweep the build's half-written files from the folders it writes in."""
        claim(self.root, "--out", self.owned, self._mark, self._adopt)
        if not self.models and not self.shared:
            self._load()
        folders = {self.root} | {(self.root / p).parent for p in self.all_files()
                                 if linked_folder(self.root, self.root / p) is None}
        swept = sweep(sorted(folders))  # never into a linked folder: its files are not the build's
        if swept:
            log(f"removed {swept} half-written files left in {self.root} by an interrupted build")

    def _load(self) -> None:
        data = json.loads(read_regular(self.root / INVENTORY, MAX_INVENTORY))
        models = data.get("models") if isinstance(data.get("models"), dict) else {}
        for name, entry in models.items():
            if not _FOLDER.fullmatch(name) or self._is_shared(name) or not isinstance(entry, dict):
                continue  # an inventory edited by hand: its odd entries own nothing
            files = {p for p in entry.get("files", []) if isinstance(p, str) and _safe(p) and p.startswith(name + "/")}
            self.models[name] = {"identity": entry.get("identity"), "files": files}
        self.shared = {p for p in data.get("shared", []) if isinstance(p, str) and _safe(p) and self._is_shared(p)}

    def save(self) -> None:
        data = {"generator": GENERATOR, "format": 1,
                "about": "The files cnn-gallery wrote here; it writes and removes no others.",
                "models": {name: {"identity": m["identity"], "files": sorted(m["files"])}
                           for name, m in sorted(self.models.items())},
                "shared": sorted(self.shared)}
        self._guard(lambda: write_atomic(self.root / INVENTORY, json.dumps(data, indent=0).encode("utf-8")))

    def _guard(self, action):
        try:
            return action()
        except OSError as exc:
            raise folder_error(exc, "--out", self.root) from exc

    @staticmethod
    def _is_shared(path: str) -> bool:
        return path in SHARED_FILES or PurePosixPath(path).parts[0] in SHARED_FOLDERS

    def all_files(self) -> set[str]:
        return set().union(self.shared, *(m["files"] for m in self.models.values()))

    # models ----------------------------------------------------------------------------

    def model_slug(self, title: str, source_identity: str) -> str:
        """The model's folder: its title's slug, unless another model or a person's folder
        has it; then the slug with a digest of the model's source."""
        candidates = [slug(title)] + [f"{slug(title)}-{hashlib.blake2b(source_identity.encode(), digest_size=n).hexdigest()}"
                                      for n in (4, 8, 20)]
        for name in candidates:
            entry = self.models.get(name)
            if entry is not None and entry["identity"] in (None, source_identity):
                return name
            if entry is None and not (self.root / name).exists() and not self._is_shared(name):
                return name
        raise GalleryError(f"cannot find a folder name for model {title!r} in {str(self.root)!r}")

    def manifests(self, current: Manifest) -> list[Manifest]:
        """Every model published here, with ``current`` in its place, by name. Another
        model's ``manifest.json`` that cannot be read as one is left out of the index."""
        found = {current.model.slug: current}
        for name in self.models:
            if name not in found:
                other = self.manifest(name)
                if other is not None and other.model.slug == name:
                    found[name] = other
        return sorted(found.values(), key=lambda m: m.model.name.lower())

    def manifest(self, model: str) -> Manifest | None:
        """The manifest published for ``model``, parsed and checked; ``None`` where there is
        none that reads as one."""
        path = self.root / model / "manifest.json"
        try:
            data = read_regular(path, MAX_MANIFEST)
            digest = hashlib.blake2b(data, digest_size=16).hexdigest()
            if self._parsed.get(model, (None,))[0] != digest:  # every refresh asks; parse each version once
                self._parsed[model] = digest, read(json.loads(data), f"{model}/manifest.json")
            return self._parsed[model][1]
        except ManifestError as exc:  # said once, however many refreshes read it
            if path not in self._told:
                self._told.add(path)
                log(f"left {model!r} out of the index: {exc}")
        except (OSError, ValueError):
            pass
        return None

    # writing ---------------------------------------------------------------------------

    def begin(self, model: str, source_identity: str, files: set[str], shared: set[str]) -> None:
        """Enter every path the build may write in the inventory, before writing any.

        A path new to the inventory where something already stands was not written by
        the build: it is left as it is, now and in every later build (see :meth:`_theirs`).
        """
        known = self.all_files()
        files = {p for p in files if p in known or not self._theirs(p)}
        shared = {p for p in shared if p in known or not self._theirs(p)}
        entry = self.models.setdefault(model, {"identity": source_identity, "files": set()})
        entry["identity"] = source_identity
        entry["files"] |= files
        self.shared |= shared
        self.save()

    def _theirs(self, path: str) -> bool:
        """Whether ``path`` holds something the build did not write, or lies below a link or
        a file where a folder should be; said once per path, in one line."""
        target = self.root / path
        blocked = linked_folder(self.root, target)
        if blocked is None and not os.path.lexists(target):
            return False
        where = target if blocked is None else blocked
        if path not in self.foreign and where not in self._told:
            self._told.add(where)
            what = "something cnn-gallery did not write" if blocked is None else "a link or a file, not a folder"
            log(f"left {str(where)!r} as it is: it is {what}, so {path!r}"
                + (" is not published" if blocked is None else " and what else lies below it are not published"))
        self.foreign.add(path)
        return True

    def write(self, path: str, data: bytes) -> bool:
        """Write ``data`` at an owned ``path`` unless it already holds exactly that; True if written."""
        if path in self.foreign:
            return False
        if path not in self.shared and not any(path in m["files"] for m in self.models.values()):
            raise RuntimeError(f"{path} was not entered in the inventory before being written")
        if linked_folder(self.root, self.root / path) is not None:  # a link made since the build began
            self._theirs(path)
            return False
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if self._written.get(path) == digest:
            return False
        target = self.root / path
        try:
            same = read_regular(target, len(data)) == data
        except OSError:  # missing, larger, or not a regular file: replaced, never opened or followed
            same = False
        if same:
            self._written[path] = digest
            return False
        if target.is_dir() and not target.is_symlink():  # a person's folder where a page of ours was
            return not self._theirs(path)
        # The site is regenerated from the cache in seconds, so it skips the fsync per file
        # that the cache pays for its hours of optimization work.
        self._guard(lambda: write_atomic(target, data, durable=False))
        self._written[path] = digest
        return True

    def finish(self, model: str, files: set[str], shared: set[str]) -> list[str]:
        """Remove what the model and the site no longer list; return what went.

        Pages go first, so a page still on disk never links to a file already removed.
        """
        files, shared = set(files) - self.foreign, set(shared) - self.foreign
        stale = sorted((self.models[model]["files"] - files) | (self.shared - shared),
                       key=lambda p: (not p.endswith(".html"), p))
        for path in stale:
            target = self.root / path
            if linked_folder(self.root, target) is not None:
                continue  # removing it would remove through a link the build did not make
            if target.is_file() or target.is_symlink():
                self._guard(target.unlink)
            self._written.pop(path, None)
            self._prune_folders(target.parent)
        self.models[model]["files"] = files
        self.shared = shared
        self.save()
        return stale

    def _prune_folders(self, folder: Path) -> None:
        """Remove folders left empty, up to (not including) the site root."""
        root = self.root.resolve()
        while folder.resolve() != root and folder.resolve().is_relative_to(root):
            try:
                os.rmdir(folder)
            except OSError:
                return
            folder = folder.parent
