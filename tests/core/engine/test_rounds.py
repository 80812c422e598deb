"""Multi-round synthesis on a scripted backend: kept samples are re-annotated into the pool
the next round draws on, per-round figures, resume across rounds, schema-1 migration."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fakes import Call, FakeBackend, HashEmbedder
from test_scheduler import records, request, run

from gra_local.core.engine.scheduler import Run
from gra_local.core.errors import OutputError


def reannotating(call: Call) -> dict | None:
    """Seeds get the default annotation; generated samples ("What is n plus n?") get
    keywords that say who wrote them, so the next round's prompts can be traced."""
    if call.role == "annotate" and "plus" in call.request.messages[-1]["content"]:
        return {"domain": "math", "keywords": ["reannotated", "pool", f"by-{call.model}"],
                "summary": "Re-annotated after its round."}
    return None


def pool(out: Path) -> list[dict]:
    return [orjson.loads(line) for line in (out / "pool.jsonl").read_bytes().splitlines()]


def test_kept_samples_join_the_pool_of_the_next_round(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, backend = run(out, ["a", "b", "c"], FakeBackend(script=reannotating), samples=2,
                          rounds=3, batch=2)
    assert result.status == "complete"
    accepted = records(out, "accepted.jsonl")
    assert sorted(r["round"] for r in accepted) == [1, 1, 2, 2, 3, 3]
    added = [e for e in pool(out) if e["round"] > 0]
    # Rounds 1 and 2 feed the next round; the last round's samples feed nothing.
    assert sorted(e["round"] for e in added) == [1, 1, 2, 2]
    assert {e["source"] for e in added} == {r["id"] for r in accepted if r["round"] < 3}
    assert all(e["annotator"] in ("a", "b", "c") and e["keywords"][0] == "reannotated"
               for e in added)
    # Round 1 drafts see only seeds; later rounds may see re-annotated samples.
    drafts = [c for c in backend.calls if c.role == "draft"]
    assert len(drafts) == 6 and result.run_json.counts.attempts == 6  # two a round
    traced = ["reannotated" in str(c.request.messages) for c in drafts]
    assert traced[:2] == [False, False]  # round 1: the pool holds seeds only
    assert any(traced[2:]), "no round-2/3 prompt used a re-annotated sample"
    figures = result.run_json.rounds
    assert figures["1"].pool_added == 2 and figures["2"].pool_added == 2
    assert figures["3"].pool_added == 0
    assert figures["1"].accepted == 2 and figures["3"].accepted == 2


def test_invalid_reannotation_keeps_the_sample_with_its_own_keywords(tmp_path: Path) -> None:
    def broken(call: Call) -> str | None:
        if call.role == "annotate" and "plus" in call.request.messages[-1]["content"]:
            return "not json"
        return None

    out = tmp_path / "out"
    result, _ = run(out, ["a"], FakeBackend(script=broken), samples=1, rounds=2, batch=1)
    added = [e for e in pool(out) if e["round"] == 1]
    (rec,) = [r for r in records(out, "accepted.jsonl") if r["round"] == 1]
    assert len(added) == 1 and added[0]["annotator"] is None
    assert added[0]["keywords"] == rec["keywords"]
    assert result.run_json.rounds["1"].annotation_fallbacks == 1


@pytest.mark.parametrize("stop_after", [14, 19, 23])
def test_resume_across_rounds_equals_uninterrupted_run(tmp_path: Path, stop_after: int) -> None:
    opts = {"samples": 2, "rounds": 3, "batch": 2}
    names = ["a", "b", "c"]
    straight, _ = run(tmp_path / "straight", names, FakeBackend(script=reannotating), **opts)
    out = tmp_path / "resumed"
    first, _ = run(out, names, FakeBackend(script=reannotating, stop_after=stop_after), **opts)
    assert first.status == "interrupted"
    second, _ = run(out, names, FakeBackend(script=reannotating), **opts)
    assert second.status == "complete"

    def decided(path: Path) -> list[tuple[str, str, str]]:
        recs = records(path, "accepted.jsonl") + records(path, "rejected.jsonl")
        return sorted((r["id"], r["decision"], r["instruction"]) for r in recs)

    assert decided(out) == decided(tmp_path / "straight")
    key = [(e["source"], e["keywords"]) for e in pool(out)]
    assert key == [(e["source"], e["keywords"]) for e in pool(tmp_path / "straight")]
    assert second.run_json.rounds == straight.run_json.rounds


def test_more_rounds_extend_a_finished_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, ["a"], samples=1, rounds=1)
    assert [e for e in pool(out) if e["round"]] == []
    result, _ = run(out, ["a"], samples=1, rounds=2)
    assert result.status == "complete"
    assert sorted(r["round"] for r in records(out, "accepted.jsonl")) == [1, 2]
    assert [e["round"] for e in pool(out) if e["round"]] == [1]


def _as_schema_1(out: Path) -> None:
    doc = orjson.loads((out / "run.json").read_bytes())
    doc["schema_version"] = 1
    for key in ("dedup_threshold", "minhash", "canaries", "calibration", "min_canary_accuracy"):
        doc["identity"]["options"].pop(key)
    (out / "run.json").write_bytes(orjson.dumps(doc))


def test_schema_1_run_resumes_without_dedup_and_is_refused_with_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, ["a"], samples=1)
    _as_schema_1(out)
    req = request(out, ["a"], samples=2, dedup_threshold=0.9)
    req.embedder = HashEmbedder()
    with pytest.raises(OutputError, match="--no-dedup"):
        Run(req, FakeBackend()).execute()
    result, _ = run(out, ["a"], samples=2)  # the helper's runs have dedup off
    assert result.status == "complete" and result.run_json.schema_version == 2
    assert len(records(out, "accepted.jsonl")) == 2


def test_unknown_schema_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, ["a"], samples=1)
    doc = orjson.loads((out / "run.json").read_bytes())
    doc["schema_version"] = 99
    (out / "run.json").write_bytes(orjson.dumps(doc))
    with pytest.raises(OutputError, match="schema 99"):
        run(out, ["a"], samples=1)
