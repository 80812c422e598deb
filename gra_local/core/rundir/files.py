"""Writing files safely: never through a symbolic link, every byte fsynced, the folder too.

Every file gra-local creates or appends to in a run directory (outputs, journal, pool,
canaries, overrides, logs, the lock, temp files) is opened here:

- with O_NOFOLLOW where the OS has it, so a symlink planted in the directory is refused
  with an error naming it, never followed;
- a file that had to be created gets its folder fsynced once, and an atomic write
  (temp file, fsync, rename) fsyncs the folder after the rename, so a power cut can
  neither lose a file nor leave an empty one where a complete one was;
- every OSError becomes an OutputError naming the path and the OS error
  (`cannot write DIR/accepted.jsonl: [Errno 28] No space left on device`).

An append is one unbuffered write loop: when the disk fills halfway, at most a torn last
line is left, which the next reader cuts off (journal.read_jsonl); nothing stays buffered
to be written later.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO

from gra_local.core.errors import OutputError

NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
"""0 where the OS has no O_NOFOLLOW (Windows): there, symlinks need privileges to make."""
_FLAGS: int = NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_SYMLINK_ERRNOS = {errno.ELOOP, errno.EMLINK}  # Linux and macOS say ELOOP, FreeBSD EMLINK


def write_error(path: Path, exc: OSError, verb: str = "write") -> OutputError:
    """One line naming the path and what the OS said."""
    if exc.errno in _SYMLINK_ERRNOS and path.is_symlink():
        return OutputError(f"cannot {verb} {path}: it is a symbolic link, and gra-local never "
                           "writes through one; remove it")
    reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno is not None and exc.strerror else str(exc)
    if exc.errno == errno.ENOENT and not path.parent.is_dir():
        reason = f"its folder {path.parent} is gone ({reason})"
    return OutputError(f"cannot {verb} {path}: {reason}")


def refuse_symlink(path: Path) -> None:
    """For a file gra-local will write (replace, append, repair): a symlink there is an
    OutputError, checked before anything is read from it or written."""
    if path.is_symlink():
        raise write_error(path, OSError(errno.ELOOP, os.strerror(errno.ELOOP)))


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable (a no-op where folders cannot be
    opened, as on Windows, or where the file system refuses to fsync one)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise write_error(folder, exc) from None
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise write_error(folder, exc) from None
    finally:
        os.close(fd)


def open_fd(path: Path, flags: int, mode: int = 0o644) -> int:
    """Open `path` without following a symlink, creating it if missing (then its folder is
    fsynced). `flags`: the access mode and the likes of O_APPEND, never O_CREAT."""
    try:
        try:
            return os.open(path, flags | _FLAGS)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, flags | _FLAGS | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:  # made meanwhile by someone else: open theirs
            return os.open(path, flags | _FLAGS)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        fsync_dir(path.parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_all(fh: BinaryIO, path: Path, data: bytes, fsync: bool = True) -> None:
    """Write every byte to an unbuffered file (a short write is continued), then fsync."""
    view = memoryview(data)
    try:
        while view:
            written = fh.write(view)
            view = view[written or 0:]
        if fsync:
            os.fsync(fh.fileno())
    except OSError as exc:
        raise write_error(path, exc) from None


def truncate(path: Path, size: int) -> None:
    """Cut a file to `size` bytes (a torn last line), durably, never through a symlink."""
    fd = open_fd(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        os.close(fd)


class Appender:
    """Appends whole chunks (lines) to a file; each is on disk before `append` returns."""

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self._fh: BinaryIO = os.fdopen(open_fd(path, os.O_WRONLY | os.O_APPEND), "ab", buffering=0)

    def append(self, data: bytes) -> None:
        write_all(self._fh, self.path, data, self.fsync)

    def close(self) -> None:
        self._fh.close()


def write_atomic(path: Path, data: bytes, symlink_ok: bool = False) -> None:
    """Replace `path` with `data` all at once: temp file, fsync, rename, fsync the folder.
    A failure leaves the old file as it was (and no temp file). A symlink at `path` is
    refused unless `symlink_ok` (a settings file: the link is replaced, never followed)."""
    if not symlink_ok:
        refuse_symlink(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _FLAGS, 0o644)
    except OSError as exc:
        raise write_error(tmp if tmp.is_symlink() else path, exc) from None
    try:
        with os.fdopen(fd, "wb", buffering=0) as fh:
            write_all(fh, path, data)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise write_error(path, exc) from None
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the folder itself is gone or read-only: nothing left to tidy
        raise
    fsync_dir(path.parent)


def make_dir(path: Path) -> None:
    """Create a folder inside a run directory (and its parents); a symlink in its place is
    refused, like a symlinked file."""
    if path.is_symlink():
        raise OutputError(f"cannot use {path}: it is a symbolic link, and gra-local never "
                          "writes through one; remove it")
    try:
        existed = path.is_dir()
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc, "create") from None
    if not existed:
        fsync_dir(path.parent)
