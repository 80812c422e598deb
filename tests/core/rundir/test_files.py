"""Safe writes in the run directory: no symlink followed, folders fsynced, disk errors named."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from disk_faults import FillsUp

from gra_local.core.errors import OutputError
from gra_local.core.rundir import files
from gra_local.core.rundir import journal as j


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every os.fsync: "dir <path>" or "file <path>" (resolved through /proc)."""
    seen: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        seen.append(f"{kind} {os.readlink(f'/proc/self/fd/{fd}')}")
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return seen


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
needs_nofollow = pytest.mark.skipif(not files.NOFOLLOW, reason="no O_NOFOLLOW on this OS")


# --- folders are fsynced ---------------------------------------------------------------


@needs_proc
def test_atomic_write_fsyncs_the_file_then_its_folder(tmp_path: Path, fsyncs: list[str]) -> None:
    j.write_json_atomic(tmp_path / "run.json", {"status": "running"})
    assert fsyncs == [f"file {tmp_path / '.run.json.tmp'}", f"dir {tmp_path}"]
    assert j.read_json(tmp_path / "run.json") == {"status": "running"}
    assert not (tmp_path / ".run.json.tmp").exists()


@needs_proc
def test_a_new_file_fsyncs_its_folder_once(tmp_path: Path, fsyncs: list[str]) -> None:
    writer = j.JsonlAppender(tmp_path / "accepted.jsonl")
    writer.append({"id": 1})
    writer.append({"id": 2})
    writer.close()
    path = tmp_path / "accepted.jsonl"
    assert fsyncs == [f"dir {tmp_path}", f"file {path}", f"file {path}"]
    fsyncs.clear()
    writer = j.JsonlAppender(path)  # exists now: no folder fsync
    writer.append({"id": 3})
    writer.close()
    assert fsyncs == [f"file {path}"]


@needs_proc
def test_restart_fsyncs_both_folders_after_moving(tmp_path: Path, fsyncs: list[str]) -> None:
    (tmp_path / j.ACCEPTED).write_bytes(b'{"id": 1}\n')
    dest = j.archive_previous(tmp_path)
    assert dest is not None and (dest / j.ACCEPTED).exists()
    assert fsyncs == [f"dir {dest}", f"dir {tmp_path}"]


# --- symlinks are refused, never followed ----------------------------------------------


@needs_nofollow
@pytest.mark.parametrize("name", [j.ACCEPTED, j.JOURNAL, j.POOL, j.CANARIES])
def test_appending_through_a_symlink_is_refused(tmp_path: Path, name: str) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"precious\n")
    (tmp_path / name).symlink_to(target)
    with pytest.raises(OutputError, match=f"^cannot write {tmp_path / name}: it is a symbolic link"):
        j.JsonlAppender(tmp_path / name)
    assert target.read_bytes() == b"precious\n"


@needs_nofollow
def test_a_dangling_symlink_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / j.JOURNAL).symlink_to(tmp_path / "would-be-created")
    with pytest.raises(OutputError, match="symbolic link"):
        j.JsonlAppender(tmp_path / j.JOURNAL)
    assert not (tmp_path / "would-be-created").exists()


@needs_nofollow
def test_lock_through_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"precious")
    (tmp_path / j.LOCK).symlink_to(target)
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / j.LOCK}: it is a symbolic link"):
        j.RunLock(tmp_path).acquire()
    assert target.read_bytes() == b"precious"


@needs_nofollow
@pytest.mark.parametrize("planted", ["run.json", ".run.json.tmp"])
def test_atomic_write_refuses_a_symlinked_file_or_temp_file(tmp_path: Path, planted: str) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"precious")
    (tmp_path / planted).symlink_to(target)
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / planted}: it is a symbolic link"):
        j.write_json_atomic(tmp_path / "run.json", {"a": 1})
    assert target.read_bytes() == b"precious"


@needs_nofollow
def test_repairing_a_torn_line_never_truncates_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_bytes(b'{"id": 1}\n{"id": 2, "torn')
    (tmp_path / j.ACCEPTED).symlink_to(target)
    with pytest.raises(OutputError, match="symbolic link"):
        list(j.read_jsonl(tmp_path / j.ACCEPTED))
    assert target.read_bytes() == b'{"id": 1}\n{"id": 2, "torn'


def test_a_symlinked_folder_in_the_run_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "logs").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match=f"cannot use {tmp_path / 'logs'}: it is a symbolic link"):
        files.make_dir(tmp_path / "logs")


# --- disk errors ----------------------------------------------------------------------


def test_a_full_disk_is_one_error_naming_the_file_and_leaves_a_torn_line_resume_cuts(
        tmp_path: Path) -> None:
    path = tmp_path / j.ACCEPTED
    writer = j.JsonlAppender(path)
    writer.append({"id": "r1-000001"})
    good = path.read_bytes()
    inner = writer._out._fh
    writer._out._fh = FillsUp(inner, room=7)  # type: ignore[assignment]
    with pytest.raises(OutputError) as info:
        writer.append({"id": "r1-000002", "text": "x" * 100})
    assert str(info.value) == f"cannot write {path}: [Errno 28] No space left on device"
    writer._out._fh = inner
    writer.close()
    assert path.read_bytes() == good + b'{"id":"'  # the short write was continued, then failed
    assert [r["id"] for r in j.read_jsonl(path)] == ["r1-000001"]  # the torn line is cut
    assert path.read_bytes() == good


def test_a_vanished_folder_is_named(tmp_path: Path) -> None:
    gone = tmp_path / "out"
    with pytest.raises(OutputError, match=f"^cannot write {gone / 'run.json'}: its folder {gone} is gone"):
        j.write_json_atomic(gone / "run.json", {})


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.json"
    j.write_json_atomic(path, {"v": 1})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match=f"^cannot write {path}: \\[Errno 28\\]"):
        j.write_json_atomic(path, {"v": 2})
    assert j.read_json(path) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
