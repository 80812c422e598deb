"""The run directory: append-only outputs, the in-flight journal, the lock, run.json.

- accepted.jsonl / rejected.jsonl: one line per decided candidate, written with a single
  write, flushed and fsynced before the run moves on. A torn last line (power loss, full
  disk) is cut off on resume; that candidate is then decided again from the journal.
- journal.jsonl: snapshots of undecided candidates after each model call, so a killed
  run redoes at most the call that was in flight.
- run.json: replaced atomically (temp file + rename), never half-written.

Every file here is written through rundir.files: never through a symlink, fsynced, and
its folder fsynced after a create or a rename; a failed write is an OutputError naming
the file and the OS error.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from gra_local.core.errors import OutputError
from gra_local.core.rundir import files

ACCEPTED = "accepted.jsonl"
REJECTED = "rejected.jsonl"
UNVERIFIED = "unverified.jsonl"
JOURNAL = "journal.jsonl"
POOL = "pool.jsonl"
RUN_JSON = "run.json"
CANARIES = "canaries.jsonl"  # calibration canaries' judgements: never data
OVERRIDES = "overrides.jsonl"
LOCK = ".lock"
RUN_FILES = (ACCEPTED, REJECTED, UNVERIFIED, JOURNAL, POOL, CANARIES, OVERRIDES, RUN_JSON, "logs")


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


class JsonlAppender:
    """Appends whole lines; each write is fsynced (see files.Appender)."""

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self._out = files.Appender(path, fsync)

    def append(self, obj: Any) -> None:
        self._out.append(_dumps(obj) + b"\n")

    def close(self) -> None:
        self._out.close()


def jsonl_bytes(rows: Any) -> bytes:
    """Rows as the JSONL text JsonlAppender would have written, for files.write_atomic."""
    return b"".join(_dumps(row) + b"\n" for row in rows)


def read_jsonl(path: Path, repair: bool = True) -> Iterator[dict]:
    """Yield the records of a JSONL file we wrote. A torn last line is cut off (when
    `repair`); a bad line in the middle means the file was edited: refuse. With `repair`
    (the run's own files, which it goes on writing) a symlink is refused, never read."""
    if repair:
        files.refuse_symlink(path)
    if not path.exists():
        return
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline, else a torn write
    offset = 0
    for number, line in enumerate(lines, 1):
        offset += len(line) + 1
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise OutputError(f"{path} line {number}: not valid JSON; the file was changed by "
                              "hand. Fix or remove that line, or start over with --restart") from None
        yield obj
    if torn and repair:
        files.truncate(path, offset)


@dataclass
class JsonlScan:
    """What a file that can be rebuilt from its source holds (see scan_jsonl)."""

    rows: list[tuple[int, Any]] = field(default_factory=list)
    """(line number, object) for every line that is valid JSON."""
    problems: list[str] = field(default_factory=list)
    """"line 3: not valid JSON", "line 9: cut short", in file order."""


def scan_jsonl(path: Path) -> JsonlScan:
    """Read a JSONL file that gra-local can rebuild (the seed pool, the annotation cache):
    unlike read_jsonl, a bad or torn line is reported, never fatal, and nothing is cut."""
    scan = JsonlScan()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return scan
    lines = data.split(b"\n")
    torn = lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            scan.rows.append((number, orjson.loads(line)))
        except orjson.JSONDecodeError:
            scan.problems.append(f"line {number}: not valid JSON")
    if torn.strip():
        scan.problems.append(f"line {len(lines) + 1}: cut short")
    return scan


def write_json_atomic(path: Path, obj: Any) -> None:
    files.write_atomic(path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def read_json(path: Path) -> dict | None:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise OutputError(f"{path}: unreadable ({exc}); start over with --restart") from None


class RunLock:
    """An exclusive lock on the run directory, released when the process dies."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        fh = os.fdopen(files.open_fd(self.path, os.O_RDWR), "r+")
        try:
            _lock_file(fh)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise OutputError(f"{self.path.parent} is in use by another gra-local run "
                              f"(pid {holder}); wait for it or use another --out") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
        except OSError as exc:
            fh.close()
            raise files.write_error(self.path, exc) from None
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _lock_file(fh: IO[str]) -> None:
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        return
    import fcntl

    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def prepare_out_dir(out_dir: Path) -> None:
    """Create the directory and prove it is writable before any model loads."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | files.NOFOLLOW, 0o644))
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"output directory {out_dir} is not writable ({exc.strerror})") from None


def archive_previous(out_dir: Path) -> Path | None:
    """--restart: move an earlier run's files aside (nothing is deleted)."""
    present = [name for name in RUN_FILES if (out_dir / name).exists()]
    if not present:
        return None
    dest = out_dir / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        dest.mkdir()
        for name in present:
            os.replace(out_dir / name, dest / name)
    except OSError as exc:
        raise files.write_error(dest, exc, "move the earlier run into") from None
    files.fsync_dir(dest)
    files.fsync_dir(out_dir)
    return dest
