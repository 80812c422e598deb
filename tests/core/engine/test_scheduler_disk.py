"""A run when its disk fails it (full, vanished) or its files are damaged or planted
(pool.jsonl after a power cut, symlinks): one clear error, and a resume that equals an
uninterrupted run. Scripted backend: this is bookkeeping."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from disk_faults import ENOSPC, FullDisk
from fakes import Call, FakeBackend
from test_scheduler import decided, records, request, run

from gra_local.core.engine.scheduler import Run
from gra_local.core.errors import OutputError, error_notes
from gra_local.core.events import Event, Notice
from gra_local.core.rundir import journal as j

MODELS = ["a", "b", "c"]
OPTS = {"samples": 6, "batch": 3}


def notices(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, Notice)]


@pytest.fixture
def straight(tmp_path: Path) -> list[tuple[str, str]]:
    """What an uninterrupted run decides."""
    run(tmp_path / "straight", MODELS, **OPTS)
    return decided(tmp_path / "straight")


# --- a full disk, a vanished directory ---------------------------------------------------


def test_full_disk_mid_run_names_the_file_and_resume_equals_an_uninterrupted_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, straight: list) -> None:
    out = tmp_path / "out"
    disk = FullDisk(monkeypatch, (j.ACCEPTED, j.REJECTED), after=4)
    with pytest.raises(OutputError) as info:
        run(out, MODELS, **OPTS)
    # The first error is the one reported; run.json failing too in the finally is a note.
    assert str(info.value) == f"cannot write {out / j.ACCEPTED}: {ENOSPC}"
    assert error_notes(info.value) == [f"cannot write {out / j.RUN_JSON}: {ENOSPC}"]
    assert not (out / j.ACCEPTED).read_bytes().endswith(b"\n")  # a torn last line
    assert orjson.loads((out / j.RUN_JSON).read_bytes())["status"] == "running"  # last checkpoint

    disk.free()
    result, _ = run(out, MODELS, **OPTS)
    assert result.status == "complete"
    ids = [i for i, _ in decided(out)]
    assert len(ids) == len(set(ids)) == 6  # the torn record was redone once, nothing twice
    assert decided(out) == straight


def test_full_disk_while_writing_the_journal_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, straight: list) -> None:
    out = tmp_path / "out"
    disk = FullDisk(monkeypatch, (j.JOURNAL,), after=7)
    with pytest.raises(OutputError, match=f"^cannot write {out / j.JOURNAL}: "):
        run(out, MODELS, **OPTS)
    disk.free()
    assert run(out, MODELS, **OPTS)[0].status == "complete"
    assert decided(out) == straight


def test_output_directory_removed_mid_run_is_one_error_then_a_fresh_run(
        tmp_path: Path, straight: list) -> None:
    out = tmp_path / "out"

    def remove_once(call: Call) -> None:
        if call.role == "review_a" and out.exists() and not records(out, j.ACCEPTED):
            shutil.rmtree(out)

    with pytest.raises(OutputError) as info:
        run(out, MODELS, FakeBackend(remove_once), **OPTS)
    assert str(info.value).startswith(f"cannot write {out / j.RUN_JSON}: its folder {out} is gone")
    assert error_notes(info.value) == []  # the same error in the finally is not said twice
    assert run(out, MODELS, **OPTS)[0].status == "complete"
    assert decided(out) == straight


# --- a damaged pool.jsonl is rebuilt ---------------------------------------------------


DAMAGE = {
    "empty": (lambda lines: b"", "empty"),
    "torn": (lambda lines: b"".join(lines[:-1]) + lines[-1][:30], "line 8: cut short"),
    "bad_line": (lambda lines: lines[0] + b"{not json\n" + b"".join(lines[2:]),
                 "line 2: not valid JSON"),
    "wrong_schema": (lambda lines: b"".join(lines[:2]) + b'{"source": "seed line 1"}\n'
                     + b"".join(lines[3:]), "line 3: not a pool entry"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_pool_is_rebuilt_on_resume_with_a_warning(tmp_path: Path, case: str,
                                                        straight: list) -> None:
    out = tmp_path / "out"
    first, _ = run(out, MODELS, FakeBackend(stop_after=20), **OPTS)
    assert first.status == "interrupted"
    pool = (out / j.POOL).read_bytes()
    assert pool.count(b"\n") == 8
    damage, problem = DAMAGE[case]
    (out / j.POOL).write_bytes(damage(pool.splitlines(keepends=True)))

    events: list[Event] = []
    backend = FakeBackend()
    result = Run(request(out, MODELS, **OPTS), backend, events.append, stop=backend.stop).execute()
    assert result.status == "complete"
    warned = [n for n in notices(events) if "pool.jsonl" in n]
    assert len(warned) == 1 and f"damaged ({problem}" in warned[0] and "rebuilt" in warned[0]
    assert not [c for c in backend.calls if c.role == "annotate"]  # from the annotation cache
    assert (out / j.POOL).read_bytes() == pool
    assert decided(out) == straight


def test_a_pool_torn_in_what_a_round_added_keeps_its_seeds_and_reannotates(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, ["a"], samples=1, rounds=2)
    pool = (out / j.POOL).read_bytes()
    lines = pool.splitlines(keepends=True)
    assert [orjson.loads(x)["round"] for x in lines] == [0] * 8 + [1]
    (out / j.POOL).write_bytes(b"".join(lines[:-1]) + lines[-1][:25])  # killed mid-append

    events: list[Event] = []
    backend = FakeBackend()
    assert Run(request(out, ["a"], samples=1, rounds=2), backend, events.append).execute().status == "complete"
    (warned,) = [n for n in notices(events) if "pool.jsonl" in n]
    assert "damaged (line 9: cut short" in warned and "seeds are all there" in warned
    assert [c.role for c in backend.calls] == ["annotate"]  # the round-1 sample, nothing else
    assert (out / j.POOL).read_bytes() == pool


def test_an_intact_pool_gives_no_warning(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, MODELS, FakeBackend(stop_after=20), **OPTS)
    events: list[Event] = []
    Run(request(out, MODELS, **OPTS), FakeBackend(), events.append).execute()
    assert not [n for n in notices(events) if "damaged" in n]


# --- symlinks planted in the run directory ---------------------------------------------


@pytest.mark.parametrize("name", [j.LOCK, j.JOURNAL, j.ACCEPTED])
def test_a_symlink_planted_in_the_run_directory_is_refused(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    run(out, MODELS, FakeBackend(stop_after=20), **OPTS)
    target = tmp_path / "precious.txt"
    target.write_bytes(b"keep me\n")
    (out / name).unlink(missing_ok=True)
    (out / name).symlink_to(target)
    with pytest.raises(OutputError, match=f"^cannot write {out / name}: it is a symbolic link"):
        run(out, MODELS, **OPTS)
    assert target.read_bytes() == b"keep me\n"
