"""A call whose prompt cannot fit the model's context ("too_long") on the scripted backend:
the candidate is rejected `too_long` at whichever step it happens, with no retry, no
reviewer counted as failed, and the run goes on; a later session never asks it again."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import TOO_LONG, TOO_LONG_PROMPT, Call, FakeBackend, Reply, scores
from test_scheduler import records, run

from gra_local.core.engine.calls import TooLong
from gra_local.core.records import Record

MODELS = ["a", "b", "c", "d", "e"]
LONG = "Summarise this very long text in one paragraph please."  # the too-long candidate's


def long_first_draft(stage: str, reply: Reply = TOO_LONG):
    """A script: the first draft writes LONG, and `stage`'s calls about it get `reply`."""
    drafted: list[int] = []

    def script(call: Call) -> Reply | None:
        text = "\n".join(m["content"] for m in call.request.messages[1:])
        if call.role == "draft" and not drafted:
            drafted.append(call.request.seed)
            return {"keywords": ["long", "text", "summary"], "summary": "A long text.",
                    "instruction": LONG}
        if LONG in text and call.role == stage:
            return reply
        if LONG in text and call.role == "review_b":  # disagree, so adjudication is asked
            return scores(10 if call.model < "c" else 6)
        return None

    return script


def about_long(backend: FakeBackend, role: str) -> list[Call]:
    return [c for c in backend.calls if c.role == role
            and any(LONG in m["content"] for m in c.request.messages[1:])]


@pytest.mark.parametrize("stage", ["answer", "review_a", "review_b", "adjudicate"])
def test_a_too_long_call_rejects_its_candidate_alone(tmp_path: Path, stage: str) -> None:
    out = tmp_path / "out"
    # batches of 2: the contested candidate's batch has too few accepted to skip adjudication
    result, backend = run(out, MODELS, FakeBackend(long_first_draft(stage)), samples=3,
                          tau=6.0, delta=1.0, batch=2)
    assert result.status == "complete"  # the run went on
    rejected = [r for r in records(out, "rejected.jsonl") if r["instruction"] == LONG]
    assert len(rejected) == 1
    rec = rejected[0]
    Record.model_validate(rec)
    assert (rec["decision"], rec["reason"]) == ("rejected", "too_long")
    step = "generate" if stage == "answer" else stage
    model = rec["generator"] if stage == "answer" else about_long(backend, stage)[0].model
    asked = about_long(backend, stage)[0].request
    assert asked.min_room == (None if stage == "answer" else asked.max_tokens // 4)
    assert rec["reason_detail"] == TooLong(model, step, TOO_LONG_PROMPT,
                                           asked.min_room or asked.max_tokens, 2048).detail
    assert f"{TOO_LONG_PROMPT} tokens" in rec["reason_detail"] and "2048" in rec["reason_detail"]
    assert len(about_long(backend, stage)) == 1  # never retried, no replacement reviewer
    assert rec["tokens"]["prompt"] < TOO_LONG_PROMPT  # never decoded: its tokens not counted
    assert rec["reviews"] and all(rv["failures"] == 0 for rv in rec["reviews"])
    assert not [r for r in records(out, "accepted.jsonl") if r["instruction"] == LONG]
    assert len(records(out, "accepted.jsonl")) == 3  # the others were decided as usual
    data = result.run_json
    assert data.counts.by_reason["too_long"] == 1
    for name in MODELS:  # no model's judge output counted as invalid
        assert data.parse_failures.get(name, {}) == {}


def test_a_too_long_draft_is_rejected_without_a_retry(tmp_path: Path) -> None:
    first: list[int] = []

    def script(call: Call) -> Reply | None:
        if call.role == "draft" and not first:
            first.append(call.request.seed)
            return TOO_LONG
        return None

    out = tmp_path / "out"
    result, backend = run(out, ["a"], FakeBackend(script), samples=2)
    assert result.status == "complete"
    (rec,) = [r for r in records(out, "rejected.jsonl") if r["reason"] == "too_long"]
    assert rec["instruction"] == "" and rec["reason_detail"].startswith("generate with a: ")
    assert first[0] + 1 not in [c.request.seed for c in backend.calls if c.role == "draft"]
    assert len(records(out, "accepted.jsonl")) == 2


def test_a_later_session_never_asks_a_too_long_candidate_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, MODELS, FakeBackend(long_first_draft("review_b")), samples=2)
    assert [r["reason"] for r in records(out, "rejected.jsonl")] == ["too_long"]
    again = FakeBackend()  # writes no LONG: a call about it would be the old candidate's
    result, _ = run(out, MODELS, again, samples=4)  # a larger --samples extends the run
    assert result.status == "complete"
    assert not about_long(again, "review_a") and not about_long(again, "review_b")
    assert [r["reason"] for r in records(out, "rejected.jsonl")] == ["too_long"]
    assert len(records(out, "accepted.jsonl")) == 4


def test_a_server_that_refuses_without_counting_is_named_plainly() -> None:
    long = TooLong("judge-8b", "review_b", 0, 130, 4096)  # an endpoint model's too_long
    assert long.detail == ("review_b with judge-8b: its server refused the prompt with 130 tokens "
                           "for the reply as longer than its context")
