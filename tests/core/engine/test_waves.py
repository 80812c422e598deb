"""Waves: a stage hands each model all of its calls at once (`chat_many`), retries and
replacement reviewers come in later waves, results go back to the right candidates, and
a stop that cuts a wave short records nothing of it (scripted backend)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from fakes import PASS, Call, FakeBackend, fenced, scores
from test_scheduler import records, request, run

from gra_local.core.backend import ChatRequest, ChatResult, LoadInfo
from gra_local.core.engine.scheduler import Run

NAMES = ["a", "b", "c", "d", "e"]


def waves_of(backend: FakeBackend, role: str) -> dict[str, list[int]]:
    """Per model, the waves (indexes) that made its calls of one role, in order."""
    out: dict[str, list[int]] = {}
    for call in backend.calls:
        if call.role == role and call.wave not in out.setdefault(call.model, []):
            out[call.model].append(call.wave)
    return out


def n_of(instruction: str) -> int:
    """The number the fake generator put in a draft ("What is n plus n?")."""
    return int(instruction.split()[2])


def test_a_stage_sends_each_model_its_calls_in_one_wave(tmp_path: Path) -> None:
    result, backend = run(tmp_path / "out", NAMES, samples=6, batch=6, max_attempts=6)
    assert result.status == "complete" and result.run_json.counts.accepted == 6
    assert all(call.wave is not None for call in backend.calls)  # nothing one at a time
    for role in ("annotate", "draft", "answer", "review_a", "review_b"):
        for model, waves in waves_of(backend, role).items():
            (wave,) = waves  # no retry anywhere: one wave per model and stage
            calls = [c for c in backend.calls if c.wave == wave]
            assert {(c.model, c.role) for c in calls} == {(model, role)}
            assert backend.waves[wave] == len(calls)  # nothing else in it, nothing cancelled
    # One model, one batch: every candidate's draft goes in the same wave, in candidate order.
    _, single = run(tmp_path / "one", ["a"], samples=4, batch=4, max_attempts=4)
    drafts = [c for c in single.calls if c.role == "draft"]
    assert len({c.wave for c in drafts}) == 1 and len(drafts) == 4
    kept = sorted(records(tmp_path / "one", "accepted.jsonl"), key=lambda r: r["attempt"])
    assert [c.request.seed % 1000 for c in drafts] == [n_of(r["instruction"]) for r in kept]
    assert single.waves[:3] == [8, 4, 4]  # annotate the seed pool, drafts, answers
    assert single.waves[3:5] == [12, 12]  # three panel slots each, review A then B


def test_retries_and_replacements_come_in_later_waves(tmp_path: Path) -> None:
    def script(call: Call):
        if call.role == "review_b" and call.model == "b":
            return "{broken" if call.request.temperature < 0.3 else None  # the retry is hotter
        if call.role == "review_b" and call.model == "c":
            return "{broken"  # c never answers: its slots go to other reviewers
        return None

    result, backend = run(tmp_path / "out", NAMES, FakeBackend(script), samples=8, batch=8,
                          max_attempts=8)
    assert result.status == "complete"
    by_model = waves_of(backend, "review_b")
    # b: a wave of first tries, then a wave of their retries, same order, seed + 1.
    tries = [c for c in backend.calls if c.wave == by_model["b"][0]]
    retries = [c for c in backend.calls if c.wave == by_model["b"][1]]
    assert tries and all(c.model == "b" and c.request.temperature < 0.3 for c in tries)
    assert [c.request.seed + 1 for c in tries] == [c.request.seed for c in retries]
    assert all(c.model == "b" and c.request.temperature > 0.3 for c in retries)
    # c: its first tries, its retries; then, in a later pass, the replacement reviewers.
    assert len(by_model["c"]) == 2
    replaced = [r for r in records(tmp_path / "out", "accepted.jsonl")
                if any(rv["failures"] for rv in r["reviews"])]
    assert replaced and all("c" not in r["reviewers"] for r in replaced)
    for rec in replaced:
        (substitute,) = [rv["model"] for rv in rec["reviews"] if rv["failures"]]
        asked = [c for c in backend.calls if c.role == "review_b" and c.model == substitute
                 and rec["instruction"] in c.request.messages[-1]["content"]]
        assert asked and all(c.wave > max(by_model["c"]) for c in asked)
    assert result.run_json.judge_validity["c"].counted_failures == len(replaced)


def test_results_go_back_to_their_own_candidates(tmp_path: Path) -> None:
    def script(call: Call):  # each reviewer scores by the sample's own number
        if call.role == "review_b":
            instruction = fenced(call)[0]
            return scores(9 if n_of(instruction) % 2 else 3, feedback=f"n={n_of(instruction)}")
        return None

    run(tmp_path / "out", NAMES, FakeBackend(script), samples=10, batch=10, max_attempts=10)
    recs = records(tmp_path / "out", "accepted.jsonl") + records(tmp_path / "out", "rejected.jsonl")
    assert len(recs) == 10
    for rec in recs:
        n = n_of(rec["instruction"])
        assert {rv["scores"]["feedback"] for rv in rec["reviews"]} == {f"n={n}"}
        assert rec["decision"] == ("accepted" if n % 2 else "rejected")
    assert {r["decision"] for r in recs} == {"accepted", "rejected"}


def test_a_slot_settled_by_its_wave_mate_is_not_retried(tmp_path: Path) -> None:
    """One model holds all three slots, so they are asked together: slot 1 fails the
    instruction, and the invalid replies of slots 2 and 3 get no retry."""
    backend = FakeBackend()

    def script(call: Call):
        if call.role == "review_a":
            first = [c for c in backend.calls if c.role == "review_a"][0] is call
            return PASS | {"clear": "fail"} if first else "{broken"
        return None

    backend.script = script
    result, _ = run(tmp_path / "out", ["a"], backend, samples=1, batch=1, max_attempts=1)
    assert backend.waves == [8, 1, 1, 3]  # annotate, draft, answer, one review A wave: no retry
    (rec,) = records(tmp_path / "out", "rejected.jsonl")
    assert rec["reason"] == "instruction_failed" and "clear" in rec["reason_detail"]
    assert [rv["verdict"] is not None for rv in rec["reviews"]] == [True, False, False]
    validity = result.run_json.judge_validity["a"]
    assert validity.counted_failures == 0 and sum(validity.invalid_replies.values()) == 2


def test_a_cut_wave_records_nothing_and_a_resume_equals_a_straight_run(tmp_path: Path) -> None:
    opts = {"samples": 4, "batch": 4, "max_attempts": 4}
    out = tmp_path / "out"
    # One model: waves of 8 annotations, 4 drafts, 4 answers; stop after the 14th call,
    # the second answer: the other two answers come back cancelled.
    first, backend = run(out, ["a"], FakeBackend(stop_after=14), **opts)
    assert first.status == "interrupted"
    assert backend.waves == [8, 4, 4] and len(backend.calls) == 14
    assert first.run_json.stats.models["a"].calls == 12  # the cut wave's answers: not counted
    last = {c["id"]: c for c in records(out, "journal.jsonl")}  # each candidate's last snapshot
    assert len(last) == 4 and all(c["draft"] is not None for c in last.values())
    assert not any(c["response"] for c in last.values())  # no answer of the cut wave was kept
    second, again = run(out, ["a"], **opts)
    assert second.status == "complete"
    assert again.waves[0] == 4  # all four answers, first thing on resume

    straight, _ = run(tmp_path / "straight", ["a"], **opts)

    def content(path: Path) -> list[tuple]:
        recs = records(path, "accepted.jsonl") + records(path, "rejected.jsonl")
        return sorted((r["id"], r["instruction"], r["response"], r["decision"], r["mean"],
                       orjson.dumps(r["reviews"]), orjson.dumps(r["tokens"])) for r in recs)

    assert content(out) == content(tmp_path / "straight")
    # The resumed counters go on from the first session's: no call counted twice.
    assert second.run_json.stats.models["a"].calls == straight.run_json.stats.models["a"].calls


class CancellingSession:
    """Every result cancelled, whether or not anyone asked: a broken backend."""

    def __init__(self, name: str) -> None:
        self.info = LoadInfo(name=name, seconds=0.0, n_gpu_layers=0, n_ctx=2048)

    def chat(self, request: ChatRequest) -> ChatResult:
        raise AssertionError("the engine calls chat_many")

    def chat_many(self, requests: Sequence[ChatRequest],
                  cancel: threading.Event | None = None) -> list[ChatResult]:
        return [ChatResult(text="", finish_reason="cancelled", prompt_tokens=0,
                           completion_tokens=0) for _ in requests]

    def close(self) -> None:
        pass


class CancellingBackend:
    def load(self, spec) -> CancellingSession:
        return CancellingSession(spec.name)


def test_cancelled_results_nobody_asked_for_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="without being asked"):
        Run(request(tmp_path / "out", ["a"]), CancellingBackend()).execute()


def test_stage_progress_counts_calls_retries_included(tmp_path: Path) -> None:
    from gra_local.core.events import StageProgress, StageStarted

    def script(call: Call):
        if call.role == "review_b" and call.model == "b":
            return "{broken" if call.request.temperature < 0.3 else None
        return None

    events: list = []
    backend = FakeBackend(script)
    req = request(tmp_path / "out", NAMES, samples=6, batch=6, max_attempts=6)
    Run(req, backend, events.append, stop=backend.stop).execute()
    stages: list[tuple[StageStarted, list[StageProgress]]] = []
    for event in events:
        if isinstance(event, StageStarted):
            stages.append((event, []))
        elif isinstance(event, StageProgress):
            stages[-1][1].append(event)
    assert [s.stage for s, _ in stages] == ["annotate", "generate", "review_a", "review_b"]
    for _, progress in stages:
        done = [p.done for p in progress]  # a step per call (a retry grows the total alone)
        assert done == sorted(done) and sorted(set(done)) == list(range(1, done[-1] + 1))
        assert progress[-1].done == progress[-1].total
    generate = stages[1]
    assert generate[0].total == 12 and generate[1][-1].total == 12  # a draft and an answer each
    review_b = stages[3]
    b_calls = len([c for c in backend.calls if c.role == "review_b" and c.model == "b"])
    assert b_calls and review_b[0].total == 18 and review_b[1][-1].total == 18 + b_calls // 2  # + retries


def test_a_stage_bar_has_room_for_the_retries_while_they_run(tmp_path: Path) -> None:
    """One model, three seeds' annotations broken at the first try: their retries are the
    stage's last wave, counted in the total as they are sent, so the bar is full only
    when the first tries are back (before the retries are sent) and at the end."""
    from gra_local.core.events import StageProgress

    first_tries: set[str] = set()

    def script(call: Call):
        if call.role != "annotate":
            return None
        prompt = call.request.messages[-1]["content"]
        if len(first_tries) < 3 and prompt not in first_tries:
            first_tries.add(prompt)
            return "{broken"
        return None

    events: list = []
    backend = FakeBackend(script)
    Run(request(tmp_path / "out", ["a"], samples=2, batch=2, max_attempts=2), backend,
        events.append, stop=backend.stop).execute()
    annotate = [(e.done, e.total) for e in events if isinstance(e, StageProgress) and e.stage == "annotate"]
    assert annotate[-1][0] == annotate[-1][1] > annotate[0][1]  # three retries in the total
    assert sum(done == total for done, total in annotate) <= 2, annotate


def test_stage_progress_moves_as_each_result_comes_back(tmp_path: Path) -> None:
    """A stage's calls are often one wave: its bar moves with each result the session
    reports, before the wave returns, not from 0 to 100 % at its end; tokens add up."""
    from gra_local.core.events import StageProgress

    events: list = []
    backend = FakeBackend()
    load = backend.load

    def marking(spec):  # marks in the event stream where each wave returned
        session = load(spec)
        inner = session.chat_many

        def chat_many(requests, cancel=None):
            out = inner(requests, cancel)
            events.append(("returned", len(requests)))
            return out

        session.chat_many = chat_many
        return session

    backend.load = marking  # type: ignore[method-assign]
    req = request(tmp_path / "out", ["a"], samples=4, batch=4, max_attempts=4)
    Run(req, backend, events.append, stop=backend.stop).execute()
    waves = []  # per wave of 2 calls or more: the stage's done counts seen before it returned
    seen: list[StageProgress] = []
    for event in events:
        if isinstance(event, StageProgress):
            seen.append(event)
        elif isinstance(event, tuple):
            if event[1] > 1:
                waves.append((event[1], [p.done for p in seen]))
            seen = []
    assert waves and all(len(done) == n and done == sorted(done) and len(set(done)) == n
                         for n, done in waves)  # one step per result, inside the wave
    last = [e for e in events if isinstance(e, StageProgress) and e.stage == "review_b"][-1]
    assert last.done == last.total and last.tokens == 20 * last.total  # the fake: 20 tokens a call


def test_a_backend_error_names_the_stage_and_the_model(tmp_path: Path) -> None:
    from gra_local.core.errors import BackendError

    def script(call: Call):
        if call.role == "review_b":
            raise BackendError("llama.cpp could not parse the GBNF grammar starting 'root ::='")
        return None

    with pytest.raises(BackendError) as err:
        run(tmp_path / "out", ["a"], FakeBackend(script=script), samples=1, batch=1, max_attempts=1)
    assert str(err.value) == ("review_b with a: llama.cpp could not parse the GBNF grammar "
                              "starting 'root ::='")


ALL_LOCAL_SENT = ("26aa5ed8d6a5785b50acdb466efc0c5fba599cbce511b0f2084c922ae2ed5465", 72)
"""sha256 and length of `sent` below, recorded before endpoint models' groups ran
concurrently: a run of local models only must send exactly what it sent then."""


def test_local_models_only_send_the_same_requests_in_the_same_order(tmp_path: Path) -> None:
    import hashlib

    def script(call: Call):  # retries, replacement reviewers and adjudications
        if call.role == "review_b" and call.model == "b":
            return "{broken" if call.request.temperature < 0.3 else None
        if call.role == "review_b" and call.model == "c":
            return "{broken"
        if call.role == "review_b":
            return scores(10) if call.request.seed % 3 == 0 else scores(7)
        return None

    result, backend = run(tmp_path / "out", NAMES, FakeBackend(script), samples=6, batch=6,
                          max_attempts=8, tau=7.5, delta=0.5)
    assert result.status == "complete"
    sent = [(c.model, c.role, c.request.seed, round(c.request.temperature, 3),
             c.request.max_tokens, c.request.grammar is not None, c.wave) for c in backend.calls]
    assert {c[1] for c in sent} == {"annotate", "draft", "answer", "review_a", "review_b",
                                    "adjudicate"}
    assert (hashlib.sha256(repr(sent).encode()).hexdigest(), len(sent)) == ALL_LOCAL_SENT


def test_between_results_the_running_calls_move_the_bar_and_it_never_goes_back() -> None:
    """A local worker's tick reports its running calls' share of their work: the event
    carries it apart from the calls done (the bar shows done + running); a result counts
    its call whole and drops the stale share, and what is shown never goes back."""
    from types import SimpleNamespace

    from gra_local.core.engine.waves import Task, _Progress
    from gra_local.core.events import StageProgress

    events: list[StageProgress] = []
    ctx = SimpleNamespace(round=1, emit=events.append)
    tasks = [Task(model="a", steps=iter(())) for _ in range(4)]  # type: ignore[arg-type]
    progress = _Progress(ctx, "generate", tasks)  # type: ignore[arg-type]
    progress.wave("a")
    progress.running("a", 1.5, 40)
    assert (events[-1].done, events[-1].running, events[-1].tokens) == (0, 1.5, 40)
    progress.result("a", 30)  # one call back: counted whole, the share of the rest unknown yet
    assert (events[-1].done, events[-1].running, events[-1].tokens) == (1, 0.5, 40)
    progress.running("a", 0.9, 25)  # the three others, fresh: 1 + 0.9 < 1.5 shown before
    assert events[-1].done + events[-1].running == pytest.approx(1.9)
    assert events[-1].tokens == 55
    levels = [e.done + e.running for e in events]
    assert levels == sorted(levels)
