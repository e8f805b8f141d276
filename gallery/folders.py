"""The folders a build writes into: which ones it owns, locks, temporaries and sweeping.

A build writes only into folders it owns. A folder is owned when it carries the
build's mark (a cache's ``CACHEDIR.TAG``, a site's inventory file), or when it is new
or empty, in which case the build marks it. A folder that holds anything else is
refused, so ``--out ~`` never touches a person's files. Temporaries have one name
shape of the build's own, and are swept only from the folders the build writes them in.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import GalleryError

try:
    import fcntl
except ImportError:  # not POSIX: builds are not locked against each other
    fcntl = None

TEMP_SUFFIX = ".cnn-gallery-tmp"  # ".{name}.{random}.cnn-gallery-tmp", see write_atomic
LEGACY_LOCK = ".cnn-gallery.lock"  # what builds before ownership left in both folders


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write via a temporary file in the same folder and ``os.replace``: never half a file.

    ``durable`` also flushes the bytes to disk before the rename, so even a power cut
    cannot leave an empty file under the final name; a killed process cannot either way.
    On failure (a full disk, say) the temporary is removed before the error goes up.
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


def read_regular(path: Path, limit: int | None = None) -> bytes:
    """A regular file's bytes, never through a link, never more than ``limit`` bytes.

    Anything else (a link, a FIFO, a device, a folder) raises ``OSError`` at once: the file
    is opened without blocking and without following a final link, and checked by ``fstat``
    before a byte is read, so a FIFO cannot hang the build and an oversized file cannot
    exhaust its memory.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if limit is not None and info.st_size > limit:
            raise OSError(errno.EFBIG, f"{info.st_size} bytes, more than the {limit} expected", str(path))
        return handle.read() if limit is None else handle.read(limit + 1)


def linked_folder(root: Path, path: Path) -> Path | None:
    """The first folder between ``root`` (excluded) and ``path`` (excluded) that is a link
    or not a folder at all, or ``None``: writing at ``path`` would then go through it."""
    folder = root
    for part in path.relative_to(root).parts[:-1]:
        folder = folder / part
        try:
            mode = os.lstat(folder).st_mode
        except FileNotFoundError:
            return None  # what is missing the build makes itself, as real folders
        except NotADirectoryError:
            return folder
        if not stat.S_ISDIR(mode):
            return folder
    return None


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def sweep(folders: Iterable[Path], legacy: re.Pattern | None = None) -> int:
    """Remove the build's own half-written files directly inside ``folders`` (not below).

    ``legacy`` also matches temporaries named the way older builds named them.
    Call with the folder's lock held.
    """
    count = 0
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and (
                    is_temporary(entry.name) or (legacy is not None and legacy.fullmatch(entry.name))):
                try:
                    os.unlink(entry.path)
                    count += 1
                except FileNotFoundError:
                    pass
    return count


def remove(path: Path) -> None:
    """Remove whatever stands at ``path`` (file, link or folder) without following links."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except (FileNotFoundError, NotADirectoryError):
        pass


def check_layout(out: Path, cache: Path, protected: Iterable[Path] = ()) -> None:
    """Refuse, before anything is written, folders that cannot work as ``--out`` and ``--cache``.

    ``protected`` are folders neither may be in: the installed package and its templates,
    which every later build would otherwise publish, the site nested inside itself.
    """
    for flag, folder in (("--out", out), ("--cache", cache)):
        if folder.is_symlink() and not folder.exists():
            raise GalleryError(f"{flag} {str(folder)!r} is a link to {os.readlink(folder)!r}, which does not exist; "
                               "create that folder, or give another path")
        if folder.exists() and not folder.is_dir():
            raise GalleryError(f"{flag} {str(folder)!r} is a file, not a folder; give a folder path")
        for inside in protected:
            if Path(folder).resolve().is_relative_to(Path(inside).resolve()):
                raise GalleryError(f"{flag} {str(folder)!r} is inside cnn-gallery's own files {str(inside)!r}; "
                                   "give a folder outside them")
    a, b = Path(out).resolve(), Path(cache).resolve()
    if a == b:
        raise GalleryError(f"--out and --cache are the same folder {str(out)!r}; the cache must stay out of "
                           "the published site: give them different folders")
    if b.is_relative_to(a):
        raise GalleryError(f"--cache {str(cache)!r} is inside --out {str(out)!r}; it would be published with "
                           "the site: put the cache elsewhere")
    if a.is_relative_to(b):
        raise GalleryError(f"--out {str(out)!r} is inside --cache {str(cache)!r}; give them separate folders")


def first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself or a parent) that does not exist yet."""
    path = Path(path).absolute()
    missing = None
    while not path.exists() and not path.is_symlink() and path != path.parent:
        missing, path = path, path.parent
    return missing


def empty(folder: Path) -> bool:
    try:
        return Path(folder).is_dir() and not Path(folder).is_symlink() and not any(os.scandir(folder))
    except OSError:
        return False


def undo_created(folder: Path, top: Path | None, marks: set[str]) -> bool:
    """Take back what a failed build made of ``folder``, if it holds nothing but the build's
    own ``marks`` and empty folders: its contents, and the folder itself with its parents up
    to ``top`` where the build created them (``top`` is ``None`` for a folder that was
    there, empty, before). True if anything was taken back."""
    folder = Path(folder).absolute()
    try:
        for entry in folder.rglob("*"):
            if entry.is_symlink() or (entry.is_file() and not (entry.parent == folder and entry.name in marks)):
                return False
        for entry in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
            entry.rmdir() if entry.is_dir() else entry.unlink()
        if top is None:
            return True
        while True:
            folder.rmdir()
            if folder == top or not folder.is_relative_to(top):
                return True
            folder = folder.parent
    except OSError:
        return False


def claim(folder: Path, flag: str, owned, mark, adopt=None) -> None:
    """Make sure the build owns ``folder``, or refuse it in one line.

    ``owned(folder)`` tells whether it carries the build's mark; ``mark(folder)`` puts
    it there. A missing or empty folder is created and marked. ``adopt(folder)``, if
    given, recognises a folder an older build wrote, marks it and returns True.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if owned(folder):
            _probe(folder)
            return
        if not any(os.scandir(folder)):
            mark(folder)
            return
    except OSError as exc:
        raise folder_error(exc, flag, folder) from exc
    if adopt is not None and adopt(folder):
        return
    raise _not_ours(folder, flag)


def check_claimable(folder: Path, flag: str, owned, adoptable) -> None:
    """Refuse now, writing nothing, a folder that :func:`claim` would refuse, so that a
    refused ``--out`` leaves no new ``--cache`` behind, nor the reverse."""
    folder = Path(folder)
    try:
        if not folder.is_dir() or owned(folder) or not any(os.scandir(folder)) or adoptable(folder):
            return
    except OSError:
        return  # claim says what is wrong, in its own words
    raise _not_ours(folder, flag)


def _not_ours(folder: Path, flag: str) -> GalleryError:
    shown = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(folder))[:3]
    return GalleryError(
        f"{flag} {str(folder)!r} is not empty and was not made by cnn-gallery (it holds "
        f"{', '.join(map(repr, shown))}{' …' if len(shown) == 3 else ''}); its files are left alone. "
        f"Give {flag} a new or empty folder, or one an earlier build wrote")


def _probe(folder: Path) -> None:
    """Fail now, not hours into a build, if the folder cannot take a new file."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".probe.", suffix=TEMP_SUFFIX)
    os.close(fd)
    os.unlink(tmp)


def folder_error(exc: OSError, flag: str, folder: Path) -> GalleryError:
    """One line for the ways a folder can refuse writes: full, read-only, not allowed."""
    where = exc.filename or folder
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return GalleryError(f"no space left on the device of {flag} {str(folder)!r} (writing {str(where)!r}); "
                            "free some space and run again: finished tiles are kept")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return GalleryError(f"{flag} {str(folder)!r} is not writable ({os.strerror(exc.errno)}: {str(where)!r}); "
                            f"give {flag} a folder you can write to")
    return GalleryError(f"cannot write {flag} {str(folder)!r}: {exc}")


def _holder(folder: Path) -> str:
    """The pid holding a ``flock`` on ``folder``, read from ``/proc/locks`` (Linux), or ``?``."""
    try:
        st = os.stat(folder)
        device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                parts = line.split()
                if len(parts) > 5 and parts[1] == "FLOCK" and parts[5] == device:
                    return parts[4]
    except OSError:
        pass
    return "?"


class FolderLock:
    """An exclusive lock on a folder for the length of a build, with no file of its own.

    The lock is a ``flock`` on the folder itself, so nothing is left in the published
    site, and the kernel releases it when the process dies, even by ``kill -9``.
    """

    def __init__(self, folder, role: str):
        self.folder = Path(folder)
        self.role = role
        self.fd = None

    def __enter__(self):
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise folder_error(exc, "--out" if self.role == "output" else "--cache", self.folder) from exc
        if fcntl is None:
            return self
        self.fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise GalleryError(
                f"another build (pid {_holder(self.folder)}) holds the {self.role} folder {str(self.folder)!r}; "
                f"wait for it to finish, or use another {'--out' if self.role == 'output' else '--cache'}"
            ) from None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None
