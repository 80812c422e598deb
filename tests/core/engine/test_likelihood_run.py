"""The likelihood stage inside a run (scripted backend with a stand-in scorer): every
answer is read once, before any review call; records and canaries carry the signals; a
resume does not read them again; off with --no-likelihood or without a scoring model."""

from __future__ import annotations

from pathlib import Path

import orjson
from fakes import FakeBackend
from test_scheduler import records, request

from gra_local.core.engine.scheduler import Run

FILES = ("accepted.jsonl", "rejected.jsonl", "unverified.jsonl")
"""Every outcome's records, unverified included: each carries the reading."""


def go(out: Path, backend: FakeBackend | None = None, scorer: str | None = "a", **opts):
    backend = backend or FakeBackend()
    req = request(out, ["a", "b", "c"], **({"samples": 2, "batch": 3, "canaries": 2} | opts))
    req.scorer = scorer
    return Run(req, backend, stop=backend.stop).execute(), backend


def test_every_answer_is_scored_once_and_records_carry_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, backend = go(out)
    recs = [r for f in FILES for r in records(out, f)]
    assert recs and all(r["likelihood"]["model"] == "a" for r in recs)
    rec = recs[0]["likelihood"]
    assert rec["tokens"] == len(recs[0]["response"].split())
    # "The answer is twice the number." shares no word with "What is n plus n? ..." but "is"
    assert rec["pmi"] < 0 and rec["end_logprob"] == -0.5
    canaries = [orjson.loads(line) for line in (out / "canaries.jsonl").read_bytes().splitlines()]
    assert canaries and all("likelihood" in row for row in canaries)
    journal = {orjson.loads(x)["id"] for x in (out / "journal.jsonl").read_bytes().splitlines()}
    assert len(backend.scored) == len(journal)  # once each, canaries and the undecided included
    first_review = next(i for i, c in enumerate(backend.calls) if c.role.startswith("review"))
    assert backend.loads.index("a") <= first_review
    assert result.run_json.timings["likelihood"] >= 0


def test_off_without_a_scorer_or_when_asked(tmp_path: Path) -> None:
    for name, kwargs in (("none", {"scorer": None}), ("off", {"likelihood": False})):
        out = tmp_path / name
        _, backend = go(out, **kwargs)
        assert not backend.scored
        assert all("likelihood" not in r for r in records(out, "accepted.jsonl"))


def asked(backend: FakeBackend) -> list[tuple[str, str]]:
    return [(r.messages[-1]["content"], r.response) for r in backend.scored]


def test_a_resumed_run_does_not_score_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = FakeBackend(stop_after=9)  # annotation (8 calls), then the first review call
    go(out, first)
    assert first.scored
    again = FakeBackend()
    go(out, again)
    both = asked(first) + asked(again)
    _, straight = go(tmp_path / "straight")
    # no answer read twice: the two sessions read what one straight run reads (texts can
    # repeat within a run: two canary pairs may share their original)
    assert sorted(both) == sorted(asked(straight))
    written = [r for f in FILES for r in records(out, f)]
    assert written and all("likelihood" in r for r in written)
