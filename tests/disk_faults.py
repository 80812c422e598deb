"""A disk that fills up mid-run, for the tests of what a run does when its writes fail.

It patches `gra_local.core.rundir.files.write_all`, through which every write in a run
directory goes, so the real code runs: the short write is continued, the OS error is
turned into the one-line OutputError, the torn line is left for the resume to cut.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from gra_local.core.rundir import files

ENOSPC = f"[Errno 28] {os.strerror(errno.ENOSPC)}"


class FillsUp:
    """An unbuffered file on a disk with `room` bytes left: they are written, then ENOSPC."""

    def __init__(self, fh: object, room: int) -> None:
        self.fh, self.room = fh, room

    def write(self, data: memoryview) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = int(self.fh.write(data[:self.room]))  # type: ignore[attr-defined]
        self.room -= written
        return written

    def fileno(self) -> int:
        return int(self.fh.fileno())  # type: ignore[attr-defined]


class FullDisk:
    """After `after` writes to files named in `names`, the disk is full: the next such
    write stops halfway (a torn line) and every write after it, to any file, fails."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...], after: int) -> None:
        self.names, self.left, self.full = names, after, False
        self._real = files.write_all
        monkeypatch.setattr(files, "write_all", self._write_all)
        self._undo = monkeypatch

    def _write_all(self, fh: object, path: Path, data: bytes, fsync: bool = True) -> None:
        if self.full:
            fh = FillsUp(fh, 0)
        elif path.name in self.names:
            if self.left == 0:
                self.full = True
                fh = FillsUp(fh, len(data) // 2)
            self.left -= 1
        self._real(fh, path, data, fsync)  # type: ignore[arg-type]

    def free(self) -> None:
        """Space again (the user cleaned up): writes go through."""
        self._undo.setattr(files, "write_all", self._real)
