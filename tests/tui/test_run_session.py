"""RunSession: a run's failure reaches the app as the CLI would say it, never a crash."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS
from disk_faults import ENOSPC, FullDisk
from fakes import Call, FakeBackend, FakeSession

from gra_local.core.config import ModelSpec, Registry, Role
from gra_local.core.engine.request import RunRequest
from gra_local.core.errors import ModelError
from gra_local.core.events import Notice, StageProgress
from gra_local.core.options import RunOptions
from gra_local.core.records import ModelRef
from gra_local.core.rundir import journal as j
from gra_local.tui.run_session import EngineEvent, RunEnded, RunSession


class Target:
    """Stands in for the dashboard: keeps what the session posts."""

    def __init__(self) -> None:
        self.messages: list[object] = []

    def follow(self, session: RunSession) -> None: ...

    def post_message(self, message: object) -> bool:
        self.messages.append(message)
        return True


def session(out: Path, backend: FakeBackend) -> RunSession:
    registry = Registry(models=[ModelSpec(name="a", path="/models/a.gguf")])
    request = RunRequest(seeds=EXAMPLE_SEEDS, out_dir=out, registry=registry, models_source="test",
                         options=RunOptions(samples=3, seed_pool=8, dedup_threshold=None,
                                            judge="panel"),
                         refs={"a": ModelRef(name="a", sha256="0" * 64, quantization="Q4_K_M")},
                         cache_dir=out.parent / "cache")
    return RunSession(request, backend)


def ended(target: Target) -> RunEnded:
    last = target.messages[-1]
    assert isinstance(last, RunEnded)
    return last


def test_a_full_disk_ends_the_run_with_the_clis_lines(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    FullDisk(monkeypatch, (j.ACCEPTED,), after=1)
    target = Target()
    session(out, FakeBackend()).run(target)  # type: ignore[arg-type]
    end = ended(target)
    assert end.result is None
    assert end.error == (f"cannot write {out / j.ACCEPTED}: {ENOSPC}\n"
                         f"cannot write {out / j.RUN_JSON}: {ENOSPC}")


def test_an_os_error_from_elsewhere_is_one_line_naming_the_path(tmp_path: Path) -> None:
    def disk_full(call: Call) -> None:
        if call.role == "review_a":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/cache/embeddings.bin")

    target = Target()
    session(tmp_path / "out", FakeBackend(disk_full)).run(target)  # type: ignore[arg-type]
    assert ended(target).error == f"cannot use /cache/embeddings.bin: {ENOSPC}"


def test_an_endpoint_down_for_good_ends_interrupted_with_its_line(tmp_path: Path) -> None:
    """run.json says `interrupted` and the directory resumes: the app says so too, with the
    one line naming the endpoint, never "failed"."""
    url = "http://judge-box:8080/v1"

    class Unreachable(FakeBackend):
        def load(self, spec: ModelSpec) -> FakeSession:
            if spec.name == "e":
                raise ModelError(f"endpoint model 'e': {url}: cannot connect")
            return super().load(spec)

    out = tmp_path / "out"
    registry = Registry(models=[ModelSpec(name="a", path="/models/a.gguf"),
                                ModelSpec(name="e", endpoint=url, roles=[Role.REVIEWER])])
    refs = {"a": ModelRef(name="a", sha256="0" * 64, quantization="Q4_K_M"),
            "e": ModelRef(name="e", endpoint=url, server="llama.cpp", served_model="judge")}
    request = RunRequest(seeds=EXAMPLE_SEEDS, out_dir=out, registry=registry, models_source="test",
                         options=RunOptions(samples=3, seed_pool=8, dedup_threshold=None,
                                            judge="panel"),
                         refs=refs, cache_dir=tmp_path / "cache")
    target = Target()
    RunSession(request, Unreachable()).run(target)  # type: ignore[arg-type]
    end = ended(target)
    assert end.error is None
    assert end.result is not None and end.result.status == "interrupted"
    assert end.result.out_dir == out and end.result.run_json.status == "interrupted"
    assert orjson.loads((out / j.RUN_JSON).read_bytes())["status"] == "interrupted"
    notes = [m.event.message for m in target.messages
             if isinstance(m, EngineEvent) and isinstance(m.event, Notice)]
    assert notes[-1] == (f"endpoint model 'e' at {url} is unreachable (endpoint model 'e': {url}: "
                         "cannot connect); the run stopped: rerun the same command to resume "
                         "once its server is back")
    assert target.messages.index(end) == len(target.messages) - 1  # the note came before


def test_a_bug_is_raised_for_the_worker_after_the_run_is_said_to_end(tmp_path: Path) -> None:
    """Not turned into a failed run's line: raised (the app's worker ends the app with its
    traceback), once the dashboard has its RunEnded."""
    def bug(call: Call) -> None:
        if call.role == "review_a":
            raise TypeError("a bug")

    target = Target()
    with pytest.raises(TypeError, match="a bug"):
        session(tmp_path / "out", FakeBackend(bug)).run(target)  # type: ignore[arg-type]
    end = ended(target)
    assert end.result is None and end.error == "TypeError: a bug"


def test_a_held_progress_is_posted_once_the_engine_goes_quiet(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The throttle holds a replaceable event that comes too soon after the last post; if
    the engine then says nothing (a long call), the UI's timer posts it (`flush`)."""
    from gra_local.tui import run_session

    clock = [100.0]
    monkeypatch.setattr(run_session.time, "monotonic", lambda: clock[0])
    run, target = session(tmp_path / "out", FakeBackend()), Target()
    run._target = target  # type: ignore[assignment]
    first, second = (StageProgress(1, "generate", n, 8, "a") for n in (1, 2))
    run.sink(first)
    clock[0] += 0.01
    run.sink(second)  # held: 10 ms after the first
    run.flush()  # too soon still: nothing more
    assert [m.event for m in target.messages] == [first]  # type: ignore[attr-defined]
    clock[0] += run_session.THROTTLE_S
    run.flush()
    assert [m.event for m in target.messages] == [first, second]  # type: ignore[attr-defined]
    run.flush()  # posted once
    assert len(target.messages) == 2
