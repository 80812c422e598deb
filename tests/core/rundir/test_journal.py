"""The run directory's files: whole-line appends, torn-line recovery, atomic JSON, lock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from gra_local.core.errors import OutputError
from gra_local.core.rundir import journal as j


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


# --- JsonlAppender ---------------------------------------------------------------------


def test_appender_writes_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    writer = j.JsonlAppender(path)
    writer.append({"id": "a", "text": "line\nbreak", "n": 1})
    # every append is on disk at once (flushed), before close
    assert path.read_bytes().endswith(b"\n")
    assert path.read_bytes().count(b"\n") == 1
    writer.append({"id": "b", "ü": "ß"})
    writer.close()
    raw = lines_of(path)
    assert raw[-1] == b""
    assert [orjson.loads(line) for line in raw[:-1]] == [
        {"id": "a", "text": "line\nbreak", "n": 1}, {"id": "b", "ü": "ß"}]
    assert list(j.read_jsonl(path)) == [orjson.loads(line) for line in raw[:-1]]


def test_appender_appends_to_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": 1}\n')
    writer = j.JsonlAppender(path, fsync=False)
    writer.append({"id": 2})
    writer.close()
    assert [r["id"] for r in j.read_jsonl(path)] == [1, 2]


# --- read_jsonl ------------------------------------------------------------------------


def test_read_missing_file_yields_nothing(tmp_path: Path) -> None:
    assert list(j.read_jsonl(tmp_path / "absent.jsonl")) == []


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": 1}\n\n   \n{"id": 2}\n')
    assert [r["id"] for r in j.read_jsonl(path)] == [1, 2]


def test_torn_last_line_is_cut_and_file_truncated(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": 2}\n{"id": 3, "te')
    assert [r["id"] for r in j.read_jsonl(path)] == [1, 2]
    assert path.read_bytes() == b'{"id": 1}\n{"id": 2}\n'
    # a later append starts on a clean line
    writer = j.JsonlAppender(path)
    writer.append({"id": 3})
    writer.close()
    assert [r["id"] for r in j.read_jsonl(path)] == [1, 2, 3]
    assert path.read_bytes() == b'{"id": 1}\n{"id": 2}\n{"id":3}\n'


def test_torn_line_that_is_valid_json_is_still_cut(tmp_path: Path) -> None:
    # a write cut exactly before its newline: the JSON parses, but the record was never
    # committed (the newline is the commit mark), so it is dropped and redone
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": 2}')
    assert [r["id"] for r in j.read_jsonl(path)] == [1]
    assert path.read_bytes() == b'{"id": 1}\n'


def test_torn_only_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id"')
    assert list(j.read_jsonl(path)) == []
    assert path.read_bytes() == b""


def test_torn_line_kept_without_repair(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    data = b'{"id": 1}\n{"id": 2'
    path.write_bytes(data)
    assert [r["id"] for r in j.read_jsonl(path, repair=False)] == [1]
    assert path.read_bytes() == data


def test_truncation_happens_only_after_full_read(tmp_path: Path) -> None:
    # read_jsonl is a generator: the file is repaired once the caller has read it all
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": 2}\n{"x"')
    it = j.read_jsonl(path)
    assert next(it) == {"id": 1}
    assert list(it) == [{"id": 2}]
    assert path.read_bytes() == b'{"id": 1}\n{"id": 2}\n'


def test_bad_line_in_the_middle_raises(tmp_path: Path) -> None:
    path = tmp_path / "accepted.jsonl"
    original = b'{"id": 1}\n{"id": 2}\nnot json at all\n{"id": 4}\n'
    path.write_bytes(original)
    with pytest.raises(OutputError) as info:
        list(j.read_jsonl(path))
    msg = str(info.value)
    assert str(path) in msg and "line 3" in msg and "--restart" in msg
    assert path.read_bytes() == original  # nothing is cut from an edited file


def test_bad_last_complete_line_raises(tmp_path: Path) -> None:
    # a line that ends with a newline was committed: if it is broken, refuse, do not cut
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": \n')
    with pytest.raises(OutputError, match="line 2"):
        list(j.read_jsonl(path))


# --- write_json_atomic / read_json ------------------------------------------------------


def test_write_json_atomic(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    j.write_json_atomic(path, {"a": 1})
    j.write_json_atomic(path, {"a": 2, "b": [1, 2]})
    assert j.read_json(path) == {"a": 2, "b": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temp file left


def test_read_json_missing_and_broken(tmp_path: Path) -> None:
    assert j.read_json(tmp_path / "run.json") is None
    (tmp_path / "run.json").write_bytes(b'{"half": ')
    with pytest.raises(OutputError, match="run.json"):
        j.read_json(tmp_path / "run.json")


# --- RunLock ---------------------------------------------------------------------------


def test_lock_conflicts_within_one_process(tmp_path: Path) -> None:
    # flock belongs to the open file description: a second open()+flock in the same
    # process conflicts, like a second process would
    first = j.RunLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(OutputError) as info:
            j.RunLock(tmp_path).acquire()
        msg = str(info.value)
        assert "in use" in msg and str(tmp_path) in msg and str(os.getpid()) in msg
    finally:
        first.release()
    again = j.RunLock(tmp_path)
    again.acquire()  # released locks can be taken again
    again.release()
    assert (tmp_path / j.LOCK).read_text() == str(os.getpid())


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, pathlib
            from gra_local.core.rundir.journal import RunLock
            lock = RunLock(pathlib.Path({str(tmp_path)!r}))
            lock.acquire()
            print("locked", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=f"in use.*pid {holder.pid}"):
            j.RunLock(tmp_path).acquire()
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    lock = j.RunLock(tmp_path)  # the lock died with its process
    lock.acquire()
    lock.release()


# --- prepare_out_dir / archive_previous -------------------------------------------------


def test_prepare_out_dir_creates_nested_dirs(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"
    j.prepare_out_dir(out)
    assert out.is_dir() and list(out.iterdir()) == []


def test_prepare_out_dir_unwritable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError) as info:
        j.prepare_out_dir(blocker / "out")
    msg = str(info.value)
    assert "not writable" in msg and str(blocker / "out") in msg
    with pytest.raises(OutputError):
        j.prepare_out_dir(blocker)  # a file where the directory should be


def test_archive_previous_moves_run_files(tmp_path: Path) -> None:
    for name in (j.ACCEPTED, j.REJECTED, j.JOURNAL, j.RUN_JSON):
        (tmp_path / name).write_text(name)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "w.log").write_text("log")
    (tmp_path / "notes.txt").write_text("mine")
    dest = j.archive_previous(tmp_path)
    assert dest is not None and dest.parent == tmp_path and dest.name.startswith("previous-")
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [j.ACCEPTED, j.REJECTED, j.JOURNAL, j.RUN_JSON, "logs"])
    assert (dest / j.ACCEPTED).read_text() == j.ACCEPTED
    assert (dest / "logs" / "w.log").read_text() == "log"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dest.name, "notes.txt"])


def test_archive_previous_with_nothing_to_move(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert j.archive_previous(tmp_path) is None
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
