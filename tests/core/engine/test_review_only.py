"""Review-only mode on a scripted backend: an existing dataset through the panel and the
adjudicator, the same record files, resume, and the inputs it must refuse."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fakes import TOO_LONG, TOO_LONG_PROMPT, Call, FakeBackend, Reply, scores
from test_scheduler import records, request

from gra_local.core.config import Role
from gra_local.core.engine.review_only import ReviewSource, read_review_data
from gra_local.core.engine.scheduler import Run
from gra_local.core.errors import SeedError


def write_data(path: Path, rows: list[object]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


PAIRS = [
    {"instruction": f"Add {n} and {n}.", "output": f"{2 * n}", "domain": "math"} for n in range(5)
] + [
    {"messages": [{"role": "user", "content": "Name a colour."},
                  {"role": "assistant", "content": "Blue."}]},
]


def review(tmp_path: Path, data: Path, backend: FakeBackend | None = None, names=("a", "b", "c"),
           **opts):
    backend = backend or FakeBackend()
    req = request(tmp_path / "out", list(names), **opts)
    req.seeds = data
    result = Run(req, backend, stop=backend.stop, source=ReviewSource()).execute()
    return result, backend


def test_every_pair_is_judged_and_nothing_generated(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl", PAIRS + [{"instruction": "No answer here."}])
    result, backend = review(tmp_path, data, batch=4)
    assert result.status == "complete"
    recs = records(tmp_path / "out", "accepted.jsonl") + records(tmp_path / "out", "rejected.jsonl")
    assert sorted(r["id"] for r in recs) == [f"d-{i:06d}" for i in range(1, 7)]
    assert {c.role for c in backend.calls} <= {"review_a", "review_b", "adjudicate"}
    first = next(r for r in recs if r["id"] == "d-000001")
    assert first["instruction"] == "Add 0 and 0." and first["response"] == "0"
    assert first["generator"] == "" and first["source"] == "data.jsonl line 1"
    assert first["domain"] == "math" and len(first["reviews"]) == 3
    assert result.run_json.seeds.without_response == 1
    assert result.run_json.seeds.mode == "review"
    assert not (tmp_path / "out" / "pool.jsonl").exists()


def test_low_scores_reject_and_panel_disagreement_goes_to_the_adjudicator(tmp_path: Path) -> None:
    def script(call: Call) -> dict | None:
        text = call.request.messages[-1]["content"]
        if call.role == "review_b" and "Add 1 and 1" in text:
            return scores(2)
        if call.role == "review_b" and "Add 2 and 2" in text:
            return scores(5 if call.model == "a" else 10)  # μ 8.33, σ 2.36: contested
        return None

    data = write_data(tmp_path / "data.jsonl", PAIRS[:3])
    review(tmp_path, data, FakeBackend(script=script))
    by_id = {r["id"]: r for r in records(tmp_path / "out", "accepted.jsonl")
             + records(tmp_path / "out", "rejected.jsonl")}
    assert by_id["d-000001"]["reason"] == "accepted"
    assert by_id["d-000002"]["reason"] == "low_score"
    contested = by_id["d-000003"]
    assert contested["reason"] == "adjudicated_accept" and contested["decision"] == "accepted"
    adj = contested["adjudication"]  # the fake adjudicator scores 9 on every field
    assert (adj["score"], adj["kept"], contested["adjudicator"]) == (9.0, True, adj["model"])
    assert sorted(contested["reviewers"]) == ["a", "b", "c"] and adj["model"] in ("a", "b", "c")
    assert contested["mean"] == pytest.approx(25 / 3) and contested["std"] > 1.5


def test_stop_and_resume_judges_each_pair_once(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl", PAIRS)
    first, _ = review(tmp_path, data, FakeBackend(stop_after=10), batch=2)
    assert first.status == "interrupted"
    second, _ = review(tmp_path, data, batch=2)
    assert second.status == "complete"
    recs = records(tmp_path / "out", "accepted.jsonl") + records(tmp_path / "out", "rejected.jsonl")
    assert sorted(r["id"] for r in recs) == [f"d-{i:06d}" for i in range(1, 7)]
    again, backend = review(tmp_path, data, batch=2)
    assert backend.calls == [] and again.status == "complete"


def test_a_generator_is_not_needed(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl", PAIRS[:2])
    req = request(tmp_path / "out", ["judge"])
    req.registry.models[0].roles = [Role.REVIEWER, Role.ADJUDICATOR]
    req.seeds = data
    result = Run(req, FakeBackend(), source=ReviewSource()).execute()
    assert result.run_json.counts.accepted == 2


def test_data_without_any_response_is_refused(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl", [{"instruction": "Say hi."}, {"prompt": "Count."}])
    with pytest.raises(SeedError, match=r"data.jsonl: no record has a response \(line 1"):
        read_review_data(data)


def test_duplicate_ids_are_refused_naming_both_lines(tmp_path: Path) -> None:
    rows = [{"id": "x1", **PAIRS[0]}, {"id": "x2", **PAIRS[1]}, {"id": "x1", **PAIRS[2]}]
    data = write_data(tmp_path / "data.jsonl", rows)
    with pytest.raises(SeedError, match="line 3: id 'x1' repeats line 1"):
        read_review_data(data)


def test_bad_data_leaves_no_run_behind(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl", [{"instruction": "Say hi."}])
    with pytest.raises(SeedError):
        review(tmp_path, data)
    out = tmp_path / "out"
    assert not (out / "accepted.jsonl").exists() and not (out / "run.json").exists()


def test_canaries_in_review_mode_are_not_attempts(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl", PAIRS)
    result, _ = review(tmp_path, data, batch=3, canaries=2, judge="panel")
    assert result.run_json.counts.attempts == 6
    assert result.run_json.calibration.canaries_judged == 4
    samples = sum(r.samples for r in result.run_json.calibration.reviewers.values())
    assert samples == 3 * 6


def test_a_pair_too_long_for_a_reviewer_is_rejected_and_the_rest_judged(tmp_path: Path) -> None:
    def script(call: Call) -> Reply | None:
        text = call.request.messages[-1]["content"]
        return TOO_LONG if call.role == "review_b" and "word word" in text else None

    data = write_data(tmp_path / "data.jsonl",
                      [PAIRS[0], {"instruction": "Repeat a word.", "output": "word " * 50}, PAIRS[1]])
    result, backend = review(tmp_path, data, FakeBackend(script=script))
    assert result.status == "complete"
    by_id = {r["id"]: r for r in records(tmp_path / "out", "accepted.jsonl")
             + records(tmp_path / "out", "rejected.jsonl")}
    assert by_id["d-000001"]["reason"] == by_id["d-000003"]["reason"] == "accepted"
    long = by_id["d-000002"]
    assert (long["decision"], long["reason"]) == ("rejected", "too_long")
    assert long["reason_detail"].startswith("review_b with ")
    assert f"a prompt of {TOO_LONG_PROMPT} tokens" in long["reason_detail"]
    assert sum(c.role == "review_b" and "word word" in c.request.messages[-1]["content"]
               for c in backend.calls) == 1  # no retry, no replacement reviewer
    again, rerun = review(tmp_path, data, FakeBackend(script=script))
    assert again.status == "complete" and rerun.calls == []  # decided: never asked again
