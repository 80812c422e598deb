"""Endpoint models' groups run at the same time as each other and as the local models'
(waves.py, concurrent.py), on the scripted backend: the specs name endpoints the fake
never contacts. Proven here: the overlap itself, stop and resume, pause, a failure in one
group cancelling the rest, results settled by another group's wave, progress and stats."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS
from fakes import PASS, ROLE_BY_SYSTEM, Call, FakeBackend, FakeSession, fenced, scores
from test_scheduler import records

from gra_local.core.backend import ChatRequest, ChatResult
from gra_local.core.config import ModelSpec, Registry
from gra_local.core.engine.model_pool import Residency
from gra_local.core.engine.request import RunRequest
from gra_local.core.engine.scheduler import Run
from gra_local.core.errors import BackendError
from gra_local.core.events import StageProgress, StageStarted
from gra_local.core.options import RunOptions
from gra_local.core.records import ModelRef

LOCAL, REMOTE = ["a", "b"], ["r1", "r2"]
ROLES = {"annotate": {"annotate"}, "generate": {"draft", "answer"}, "review_a": {"review_a"},
         "review_b": {"review_b"}}
"""The fake's roles of each stage's calls."""
WAIT_S = 10.0
Hook = Callable[[str, str, "threading.Event | None"], None]
"""Called with (model, role, cancel) as a wave reaches the model, before it is answered."""


@dataclass
class ThreadedBackend(FakeBackend):
    """The scripted backend, safe for waves from several threads: `hook` runs unlocked
    (a test makes waves meet or wait there), the fake's bookkeeping one wave at a time."""

    hook: Hook | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    cut: set[int] = field(default_factory=set)
    """Waves with a result that came back cancelled."""
    wave_roles: dict[int, str] = field(default_factory=dict)
    pause: threading.Event = field(default_factory=threading.Event)

    def load(self, spec: ModelSpec) -> ThreadedSession:
        self.loads.append(spec.name)
        return ThreadedSession(self, spec.name)


class ThreadedSession(FakeSession):
    backend: ThreadedBackend
    cancel: threading.Event | None = None

    @property  # type: ignore[override]
    def on_result(self) -> None:
        """No per-result progress here: a group's StageProgress then marks its wave applied,
        which the tests below wait on."""
        return None

    @on_result.setter
    def on_result(self, value: object) -> None:
        pass

    def chat_many(self, requests: Sequence[ChatRequest],
                  cancel: threading.Event | None = None) -> list[ChatResult]:
        role = ROLE_BY_SYSTEM[requests[0].messages[0]["content"]]
        if self.backend.hook is not None:
            self.backend.hook(self.name, role, cancel)
        with self.backend.lock:
            self.cancel = cancel
            results = super().chat_many(requests, cancel)
            wave = len(self.backend.waves) - 1
            self.backend.wave_roles[wave] = role
            if any(r.finish_reason == "cancelled" for r in results):
                self.backend.cut.add(wave)
        return results

    def chat(self, request: ChatRequest, wave: int | None = None) -> ChatResult:
        result = super().chat(request, wave)
        held = self.backend.stop.is_set() or self.backend.pause.is_set()
        if held and self.cancel is not None:
            self.cancel.wait(WAIT_S)  # a real model takes this long over its next call
        return result


def request(out: Path, local: list[str], remote: list[str], residency: bool = True,
            **opts) -> RunRequest:
    """A run of local GGUF specs and endpoint specs; without `residency`, one local model
    at a time (the endpoint models' sessions stay open beside it)."""
    specs = [ModelSpec(name=n, path=f"/models/{n}.gguf") for n in local]
    specs += [ModelSpec(name=n, endpoint="http://127.0.0.1:9/v1") for n in remote]
    names = local + remote
    refs = {n: ModelRef(name=n, sha256="0" * 64, quantization="Q4_K_M") for n in names}
    options = RunOptions(**({"samples": 6, "batch": 6, "max_attempts": 6, "seed_pool": 8,
                             "dedup_threshold": None, "canaries": 0} | opts))
    return RunRequest(seeds=EXAMPLE_SEEDS, out_dir=out, options=options,
                      registry=Registry(models=specs), refs=refs, models_source="test",
                      cache_dir=out.parent / f"{out.name}-cache",
                      residency=Residency(1 << 30, {n: 1 for n in names}) if residency else None)


def run(out: Path, backend: ThreadedBackend, local: list[str] = LOCAL,
        remote: list[str] = REMOTE, events: list | None = None,
        pause: threading.Event | None = None, **opts):
    emit = events.append if events is not None else (lambda event: None)
    return Run(request(out, local, remote, **opts), backend, emit, stop=backend.stop,
               pause=pause).execute()


def group_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("gra-group-")]


def content(out: Path) -> list[tuple]:
    recs = records(out, "accepted.jsonl") + records(out, "rejected.jsonl")
    return sorted((r["id"], r["instruction"], r["response"], r["decision"], r["mean"],
                   orjson.dumps(r["reviews"]), orjson.dumps(r["tokens"])) for r in recs)


def by_number(call: Call):
    """Scores that depend only on the sample (its draft's number): the same decisions
    whatever order the servers answer in."""
    if call.role == "review_b":
        return scores(9 if int(fenced(call)[0].split()[2]) % 2 else 3)
    return None


def meeting(role: str, arriving: Callable[[str], None] = lambda model: None) -> tuple[Hook, set[str]]:
    """A hook at which r1, r2 and a local model meet on their first wave of `role`: its
    barrier breaks (an error) unless all three are inside chat_many at once; `arriving` hears
    each model as it comes. Returns the hook and who met (r1, r2, "local")."""
    barrier = threading.Barrier(3, timeout=WAIT_S)
    met: set[str] = set()

    def hook(model: str, wave_role: str, cancel: threading.Event | None) -> None:
        key = model if model in REMOTE else "local"
        if wave_role == role and key not in met:
            met.add(key)
            arriving(model)
            barrier.wait()

    return hook, met


def test_endpoint_groups_overlap_each_other_and_the_local_group(tmp_path: Path) -> None:
    hook, met = meeting("review_a")
    events: list = []
    backend = ThreadedBackend(by_number, hook=hook)
    result = run(tmp_path / "out", backend, events=events, residency=False)
    assert result.status == "exhausted" and met == {"r1", "r2", "local"}  # odd n: rejected
    counts = result.run_json.counts
    assert counts.accepted and counts.rejected and counts.accepted + counts.rejected == 6
    # One local model at a time, while the endpoint models' sessions stay open throughout.
    assert backend.loads.count("a") > 1 and backend.loads.count("r1") == backend.loads.count("r2") == 1
    assert not group_threads()
    # Per-model stats count exactly the calls each model answered.
    for name in LOCAL + REMOTE:
        assert result.run_json.stats.models[name].calls == len(
            [c for c in backend.calls if c.model == name])
    # Progress: one event per call, in order, ending at the stage's total.
    progress: dict[str, list[StageProgress]] = {}
    for event in events:
        if isinstance(event, StageStarted):
            progress[event.stage] = []
        elif isinstance(event, StageProgress):
            progress[event.stage].append(event)
    assert list(progress) == ["annotate", "generate", "review_a", "review_b"]
    for stage, seen in progress.items():
        assert [p.done for p in seen] == list(range(1, len(seen) + 1)), stage
        assert seen[-1].done == seen[-1].total == len(
            [c for c in backend.calls if c.role in ROLES[stage]])
        assert result.run_json.stats.stages[stage].calls == seen[-1].done
    # The results went back to their own candidates, whichever thread brought them.
    straight = ThreadedBackend(by_number)
    run(tmp_path / "local", straight, local=LOCAL + REMOTE, remote=[])
    assert [r[1:] for r in content(tmp_path / "out")] == [r[1:] for r in content(tmp_path / "local")]


def test_a_stop_cancels_every_group_and_a_resume_equals_a_straight_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hook, _ = meeting("review_b")  # r1, r2 and a local model in flight
    # 8 annotations, 6 drafts, 6 answers, 18 instruction verdicts: stop at the 5th score.
    first = ThreadedBackend(by_number, stop_after=8 + 6 + 6 + 18 + 5, hook=hook)
    result = run(out, first)
    assert result.status == "interrupted" and not group_threads()
    answered = [c for c in first.calls if c.role == "review_b" and c.wave not in first.cut]
    assert first.cut and {first.wave_roles[w] for w in first.cut} == {"review_b"}
    # Nothing of a cut wave is counted or journaled: what the run kept is what whole waves
    # brought back.
    assert result.run_json.stats.stages["review_b"].calls == len(answered) < 18
    assert sum(m.calls for m in result.run_json.stats.models.values()) == \
        len([c for c in first.calls if c.wave not in first.cut])
    last = {c["id"]: c for c in records(out, "journal.jsonl")}
    kept = sum(rv["scores"] is not None for c in last.values() for rv in c["reviews"])
    assert kept == len(answered)
    second = run(out, ThreadedBackend(by_number))
    assert second.status == "exhausted"
    straight_backend = ThreadedBackend(by_number)
    straight = run(tmp_path / "straight", straight_backend)
    assert content(out) == content(tmp_path / "straight")
    total = sum(m.calls for m in second.run_json.stats.models.values())
    assert total == sum(m.calls for m in straight.run_json.stats.models.values())


def test_a_pause_holds_every_group_and_changes_nothing(tmp_path: Path) -> None:
    backend = ThreadedBackend(by_number)

    def hold(model: str) -> None:
        if model == "r1":  # everyone's first verdicts in flight: hold for a moment
            backend.pause.set()
            threading.Timer(0.3, backend.pause.clear).start()

    backend.hook, met = meeting("review_a", hold)
    result = run(tmp_path / "out", backend, pause=backend.pause)
    assert result.status == "exhausted" and met == {"r1", "r2", "local"}
    assert backend.cut and {backend.wave_roles[w] for w in backend.cut} == {"review_a"}
    run(tmp_path / "straight", ThreadedBackend(by_number))
    assert content(tmp_path / "out") == content(tmp_path / "straight")


def test_an_error_in_one_group_cancels_the_others_and_surfaces_once(tmp_path: Path) -> None:
    barrier = threading.Barrier(3, timeout=WAIT_S)  # r1, r2 and the first local model
    met: list[str] = []
    cancelled: list[str] = []

    def hook(model: str, role: str, cancel: threading.Event | None) -> None:
        key = model if model in REMOTE else "local"
        if role != "review_a" or key in met:
            raise AssertionError(f"{model}: a wave after the failure")  # none may start
        met.append(key)
        barrier.wait()  # everyone in flight
        if model == "r1":
            raise BackendError("HTTP 400: the server refused the grammar")
        assert cancel is not None and cancel.wait(WAIT_S), f"{model} never cancelled"
        cancelled.append(key)

    def gated(model: str, role: str, cancel: threading.Event | None) -> None:
        if role == "review_a":
            hook(model, role, cancel)

    backend = ThreadedBackend(hook=gated)
    with pytest.raises(BackendError) as err:
        run(tmp_path / "out", backend)
    assert str(err.value) == "review_a with r1: HTTP 400: the server refused the grammar"
    assert not getattr(err.value, "__notes__", None)  # once: no echo of it from the others
    assert sorted(cancelled) == ["local", "r2"] and not group_threads()
    report = orjson.loads((tmp_path / "out" / "run.json").read_bytes())
    assert report["status"] == "failed"
    # The cancelled waves recorded nothing: no instruction verdict was asked or counted.
    assert not [c for c in backend.calls if c.role == "review_a"]
    assert report["stats"]["stages"]["review_a"]["calls"] == 0
    assert {n: m["calls"] for n, m in report["stats"]["models"].items()} == {
        n: len([c for c in backend.calls if c.model == n]) for n in LOCAL + REMOTE}


def test_a_result_arriving_after_another_group_settled_the_sample_is_counted_not_applied(
        tmp_path: Path) -> None:
    """a fails every instruction; r1's verdicts wait until a's wave is applied, so r1's
    verdict on a sample a failed arrives after it was settled."""
    a_done = threading.Event()
    events: list = []

    def emit(event: object) -> None:
        events.append(event)
        if isinstance(event, StageProgress) and event.stage == "review_a" and event.model == "a":
            a_done.set()

    def hook(model: str, role: str, cancel: threading.Event | None) -> None:
        if role == "review_a" and model == "r1":
            assert a_done.wait(WAIT_S)

    def script(call: Call):
        if call.role == "review_a" and call.model == "a":
            return PASS | {"clear": "fail"}
        return None

    backend = ThreadedBackend(script, hook=hook)
    req = request(tmp_path / "out", LOCAL, ["r1"], panel=2)
    result = Run(req, backend, emit, stop=backend.stop).execute()
    assert result.status in ("complete", "exhausted")
    failed = [r for r in records(tmp_path / "out", "rejected.jsonl")
              if r["reason"] == "instruction_failed"]
    both = [r for r in failed if {rv["model"] for rv in r["reviews"]} == {"a", "r1"}]
    assert both  # samples b generated: a and r1 judged them, each in its own thread
    for rec in both:
        (r1,) = [rv for rv in rec["reviews"] if rv["model"] == "r1"]
        assert r1["verdict"] is None  # asked, answered, never applied
        assert "a failed the instruction" in rec["reason_detail"]
    asked = [c for c in backend.calls if c.model == "r1" and c.role == "review_a"]
    assert result.run_json.stats.models["r1"].calls >= len(asked) > 0  # each one counted
