"""The one call-and-retry helper (engine/calls.py), seen through a run on the scripted
backend: every way a call fails is reported as what it is, for free and structured calls
alike, and each retries once with a new seed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import Call, FakeBackend, Reply
from test_scheduler import records, run

from gra_local.core.engine.calls import NO_REPLY, RETRY_TEMPERATURE_BOOST


def failing(role: str, replies: list[Reply]):
    """A script: the first candidate's `role` calls get `replies`, in order."""
    first: list[int] = []

    def script(call: Call) -> Reply | None:
        if call.role != role:
            return None
        key = call.request.messages[-1]["content"]
        if not first:
            first.append(hash(key))
        if hash(key) == first[0] and replies:
            return replies.pop(0)
        return None

    return script


@pytest.mark.parametrize(("replies", "said"), [
    ([("", "length"), ("", "length")], "ran past max_tokens (512); ran past max_tokens (512)"),
    ([("", "error"), ("   ", "stop")], f"{NO_REPLY}; empty"),
])
def test_an_answer_that_fails_twice_says_how(tmp_path: Path, replies: list[Reply], said: str) -> None:
    out = tmp_path / "out"
    result, _ = run(out, ["a", "b", "c", "d"], FakeBackend(failing("answer", replies)),
                    samples=2, batch=3)
    failed = [r for r in records(out, "rejected.jsonl") if r["reason"] == "generation_failed"]
    assert len(failed) == 1
    assert failed[0]["reason_detail"] == f"{failed[0]['generator']} wrote no answer in two tries ({said})"


def test_a_lost_structured_call_is_reported_as_no_reply(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, ["a", "b", "c", "d"], FakeBackend(failing("draft", [("", "error"), ("", "error")])),
        samples=2, batch=3)
    failed = [r for r in records(out, "rejected.jsonl") if r["reason"] == "generation_failed"]
    assert failed and failed[0]["reason_detail"].endswith(f"({NO_REPLY}; {NO_REPLY})")


def test_retries_take_a_new_seed_and_only_structured_ones_run_hotter(tmp_path: Path) -> None:
    backend = FakeBackend(failing("answer", [("", "length")]))
    backend.script = _also(backend.script, failing("draft", ["not json"]))
    run(tmp_path / "out", ["a", "b", "c", "d"], backend, samples=1, batch=1)
    drafts = [c.request for c in backend.calls if c.role == "draft"][:2]
    answers = [c.request for c in backend.calls if c.role == "answer"][:2]
    assert drafts[1].seed == drafts[0].seed + 1
    assert drafts[1].temperature == pytest.approx(min(1.0, drafts[0].temperature + RETRY_TEMPERATURE_BOOST))
    assert drafts[1].temperature > drafts[0].temperature
    assert answers[1].seed != answers[0].seed
    assert answers[1].temperature == answers[0].temperature


def _also(first, second):
    def script(call: Call) -> Reply | None:
        reply = first(call)
        return reply if reply is not None else second(call)
    return script
