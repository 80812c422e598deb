"""core/results.py: finding runs, loading, filtering, statistics and overrides."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS
from fakes import Call, FakeBackend, fenced, scores

from gra_local.core.config import ModelSpec, Registry
from gra_local.core.engine.request import RunRequest
from gra_local.core.engine.scheduler import Run
from gra_local.core.options import RunOptions
from gra_local.core.records import ModelRef, Record
from gra_local.runs.browse import (
    DECISIONS,
    OVERRIDES,
    RecordFilter,
    acceptance_by,
    effective_decision,
    facets,
    find_runs,
    is_adjudicated,
    load_overrides,
    load_records,
    mean_histogram,
    reviewer_scores,
    write_override,
)


def review(model: str, score: float | None, feedback: str = "ok") -> dict:
    scores = None
    if score is not None:
        s = int(round(score))
        scores = {"correctness": s, "clarity": s, "completeness": s, "relevance": s,
                  "coherence": s, "ethics": s, "feedback": feedback}
    verdict = {"reasonable": "pass", "complete": "pass", "clear": "pass"}
    return {"model": model, "verdict": verdict, "scores": scores,
            "score": None if score is None else float(int(round(score))), "failures": 0}


def record(rid: str, decision: str, reason: str, domain: str, mean: float | None,
           generator: str = "gen-a", reviewers: tuple[str, ...] = ("rev-x", "rev-y"),
           adjudicated: bool = False, instruction: str = "Explain recursion.") -> dict:
    revs = [review(m, mean) for m in reviewers]
    adj = None
    if adjudicated:
        adj = {"model": "adj", "scores": revs[0]["scores"], "score": mean, "kept": decision == "accepted"}
    return {
        "id": rid, "round": 1, "attempt": int(rid.split("-")[1]), "instruction": instruction,
        "response": f"Response for {rid}.", "domain": domain, "keywords": ["alpha", "beta", "gamma"],
        "summary": "Alpha relates beta to gamma.", "decision": decision, "reason": reason,
        "reason_detail": reason, "reviews": revs, "mean": mean, "std": 0.0 if mean is not None else None,
        "adjudication": adj, "generator": generator, "reviewers": list(reviewers),
        "adjudicator": "adj" if adjudicated else None, "roles_shared": False,
        "models": [{"name": generator}], "sampling": {}, "seed": 1,
        "tokens": {"prompt": 10, "completion": 5},
        "created_at": "2026-01-01T00:00:00Z", "decided_at": "2026-01-01T00:00:01Z",
    }


RECORDS = [
    record("r1-1", "accepted", "accepted", "coding", 9.0),
    record("r1-2", "accepted", "adjudicated_accept", "math", 8.0, generator="gen-b", adjudicated=True),
    record("r1-3", "rejected", "low_score", "coding", 4.0, reviewers=("rev-x", "rev-z")),
    record("r1-4", "rejected", "generation_failed", "qa", None, generator="gen-b", reviewers=()),
]


def write_run(run_dir: Path, records: list[dict] = RECORDS, status: str = "complete",
              ended: str = "2026-01-01T01:00:00Z") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, decision in (("accepted.jsonl", "accepted"), ("rejected.jsonl", "rejected")):
        lines = [orjson.dumps(r) + b"\n" for r in records if r["decision"] == decision]
        (run_dir / name).write_bytes(b"".join(lines))
    doc = {"status": status,
           "counts": {"attempts": len(records), "accepted": 2, "rejected": 2, "adjudicated": 1},
           "models": {"gen-a": {"name": "gen-a"}, "rev-x": {"name": "rev-x"}},
           "sessions": [{"started": "2026-01-01T00:00:00Z", "ended": ended, "status": status}]}
    (run_dir / "run.json").write_bytes(orjson.dumps(doc))
    return run_dir


def engine_run(out: Path) -> None:
    """A small scripted run (tests/fakes.py's backend, one model, one batch of three):
    by the order its scores are asked for, one sample is accepted, one scored low, one
    contested (6, 10, 10) and rejected by its adjudicator (4)."""
    first_seen: list[str] = []
    asked: dict[str, int] = {}

    def script(call: Call):
        if call.role == "review_b":
            instruction = fenced(call)[0]
            if instruction not in first_seen:
                first_seen.append(instruction)
            asked[instruction] = asked.get(instruction, 0) + 1
            plan = first_seen.index(instruction)
            return [scores(9), scores(5), scores(6 if asked[instruction] == 1 else 10)][plan]
        return scores(4) if call.role == "adjudicate" else None

    names = ["a"]
    options = RunOptions(samples=3, max_attempts=3, batch=3, seed_pool=8, dedup_threshold=None,
                         canaries=0, judge="panel")
    req = RunRequest(seeds=EXAMPLE_SEEDS, out_dir=out, options=options,
                     registry=Registry(models=[ModelSpec(name=n, path=f"/models/{n}.gguf") for n in names]),
                     refs={n: ModelRef(name=n, sha256="0" * 64, quantization="Q4_K_M") for n in names},
                     models_source="test", cache_dir=out.parent / "cache")
    backend = FakeBackend(script)
    Run(req, backend, stop=backend.stop).execute()


def test_records_follow_the_contract(tmp_path: Path) -> None:
    """The records browse reads are the ones the engine writes, and they are Records; the
    hand-made RECORDS the tests below filter and count have the engine's fields."""
    engine_run(tmp_path / "run")
    [info] = find_runs(tmp_path)
    assert (info.status, info.accepted, info.rejected) == ("exhausted", 1, 2)
    recs = load_records(info.path)
    assert [(r["attempt"], r["decision"], r["reason"]) for r in recs] == [
        (1, "accepted", "accepted"), (2, "rejected", "low_score"),
        (3, "rejected", "adjudicated_reject")]
    for r in recs:
        rec = Record.model_validate(r)  # the full contract, on what the engine wrote
        assert r == rec.model_dump(mode="json", exclude_unset=True)  # read back as written
    assert [is_adjudicated(r) for r in recs] == [False, False, True]
    adjudicated = Record.model_validate(recs[2])
    assert adjudicated.adjudication is not None and adjudicated.adjudication.score == 4.0
    assert (adjudicated.mean, adjudicated.adjudicator) == (pytest.approx(26 / 3), "a")
    assert (facets(recs)["generator"], facets(recs)["reviewer"]) == (["a"], ["a"])

    written = set(recs[0])
    defaulted = {name for name, f in Record.model_fields.items() if not f.is_required()}
    for r in RECORDS:
        Record.model_validate(r)
        assert set(r) <= written and written - set(r) <= defaulted, r["id"]


def test_find_runs_depth_and_order(tmp_path: Path) -> None:
    write_run(tmp_path / "a", ended="2026-01-01T01:00:00Z")
    write_run(tmp_path / "x" / "y" / "b", status="interrupted", ended="2026-02-01T00:00:00Z")
    write_run(tmp_path / "1" / "2" / "3" / "too-deep")
    (tmp_path / "empty").mkdir()
    runs = find_runs(tmp_path)
    assert [r.path.name for r in runs] == ["b", "a"]
    b = runs[0]
    assert b.status == "interrupted" and b.accepted == 2 and b.rejected == 2
    assert b.models == ["gen-a", "rev-x"]
    assert b.created == "2026-01-01T00:00:00Z" and b.last_session == "2026-02-01T00:00:00Z"
    assert find_runs(tmp_path / "missing") == []
    assert [r.path for r in find_runs(tmp_path / "a")] == [tmp_path / "a"]


def test_find_runs_reports_unreadable_run_json(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{nope")
    [info] = find_runs(tmp_path)
    assert info.error and info.status == "unknown"


def test_load_records(tmp_path: Path) -> None:
    recs = load_records(write_run(tmp_path / "run"))
    assert [r["id"] for r in recs] == ["r1-1", "r1-2", "r1-3", "r1-4"]
    mixed = [RECORDS[2], RECORDS[0], record("r2-1", "rejected", "low_score", "qa", 1.0)]
    mixed[2]["round"] = 2
    recs = load_records(write_run(tmp_path / "mixed", records=mixed))
    assert [r["id"] for r in recs] == ["r1-1", "r1-3", "r2-1"]  # round, attempt order
    with open(tmp_path / "mixed" / "rejected.jsonl", "ab") as fh:
        fh.write(b'{"id": "torn')
    size = (tmp_path / "mixed" / "rejected.jsonl").stat().st_size
    assert len(load_records(tmp_path / "mixed")) == 3
    assert (tmp_path / "mixed" / "rejected.jsonl").stat().st_size == size  # read-only


@pytest.mark.parametrize("flt, ids", [
    (RecordFilter(), ["r1-1", "r1-2", "r1-3", "r1-4"]),
    (RecordFilter(decision="accepted"), ["r1-1", "r1-2"]),
    (RecordFilter(domain="coding"), ["r1-1", "r1-3"]),
    (RecordFilter(generator="gen-b"), ["r1-2", "r1-4"]),
    (RecordFilter(reviewer="rev-z"), ["r1-3"]),
    (RecordFilter(min_mean=5), ["r1-1", "r1-2"]),
    (RecordFilter(max_mean=8.5), ["r1-2", "r1-3"]),
    (RecordFilter(adjudicated=True), ["r1-2"]),
    (RecordFilter(adjudicated=False), ["r1-1", "r1-3", "r1-4"]),
    (RecordFilter(text="R1-3"), ["r1-3"]),
    (RecordFilter(text="gamma", decision="rejected", domain="qa"), ["r1-4"]),
])
def test_filters(flt: RecordFilter, ids: list[str]) -> None:
    assert [r["id"] for r in flt.apply(RECORDS)] == ids


def test_facets() -> None:
    f = facets(RECORDS)
    assert f == {"domain": ["coding", "math", "qa"], "generator": ["gen-a", "gen-b"],
                 "reviewer": ["rev-x", "rev-y", "rev-z"]}


def test_statistics() -> None:
    edges, counts = mean_histogram(RECORDS)
    assert edges[0] == 0.0 and len(edges) == 10
    assert counts[9] == 1 and counts[8] == 1 and counts[4] == 1 and sum(counts) == 3
    _, top = mean_histogram([{"mean": 10.0}])
    assert top[-1] == 1
    assert reviewer_scores(RECORDS) == {"rev-x": [9.0, 8.0, 4.0], "rev-y": [9.0, 8.0], "rev-z": [4.0]}
    by_gen = acceptance_by(RECORDS, "generator")
    assert (by_gen["gen-a"].accepted, by_gen["gen-a"].total) == (1, 2)
    assert by_gen["gen-b"].rate == 0.5
    by_dom = acceptance_by(RECORDS, "domain", {"r1-4": {"id": "r1-4", "label": "accepted"}})
    assert by_dom["qa"].rate == 1.0 and by_dom["coding"].rate == 0.5


def test_overrides_append_only_last_wins(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    before = {n: (run / n).read_bytes() for n in ("accepted.jsonl", "rejected.jsonl")}
    assert load_overrides(run) == {}
    write_override(run, "r1-3", "accepted", "actually fine", at="2026-01-02T00:00:00Z")
    write_override(run, "r1-3", "rejected", "no, bad")
    write_override(run, "r1-1", "rejected")
    lines = (run / OVERRIDES).read_bytes().splitlines()
    assert len(lines) == 3 and orjson.loads(lines[0]) == {
        "id": "r1-3", "label": "accepted", "note": "actually fine", "at": "2026-01-02T00:00:00Z"}
    ov = load_overrides(run)
    assert ov["r1-3"]["label"] == "rejected" and ov["r1-3"]["note"] == "no, bad"
    assert effective_decision(RECORDS[0], ov) == "rejected"
    assert [r["id"] for r in RecordFilter(decision="accepted").apply(RECORDS, ov)] == ["r1-2"]
    assert {n: (run / n).read_bytes() for n in before} == before
    with pytest.raises(ValueError):
        write_override(run, "r1-1", "maybe")


UNVERIFIED = record("r1-5", "unverified", "unverified", "qa", None, reviewers=())


def test_unverified_records_are_read_filtered_and_counted_apart(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    (run / "unverified.jsonl").write_bytes(orjson.dumps(UNVERIFIED) + b"\n")
    doc = orjson.loads((run / "run.json").read_bytes())
    doc["counts"]["unverified"] = 1
    (run / "run.json").write_bytes(orjson.dumps(doc))
    before = (run / "unverified.jsonl").read_bytes()
    recs = load_records(run)
    assert [(r["id"], r["decision"]) for r in recs][-1] == ("r1-5", "unverified")
    assert len(recs) == 5 and (run / "unverified.jsonl").read_bytes() == before  # read-only
    assert "unverified" in DECISIONS
    assert [r["id"] for r in RecordFilter(decision="unverified").apply(recs)] == ["r1-5"]
    assert [r["id"] for r in RecordFilter(decision="rejected").apply(recs)] == ["r1-3", "r1-4"]
    [info] = find_runs(run)
    assert (info.accepted, info.rejected, info.unverified) == (2, 2, 1)
    assert acceptance_by(recs, "domain")["qa"].total == 2  # in the total, never accepted
    Record.model_validate(UNVERIFIED)
    ov = {"r1-5": {"id": "r1-5", "label": "accepted"}}  # a person may decide it
    assert [r["id"] for r in RecordFilter(decision="accepted").apply(recs, ov)] == ["r1-1", "r1-2", "r1-5"]
