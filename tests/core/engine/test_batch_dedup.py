"""Dedup inside a run (scripted backend, bag-of-words embedder): highest μ kept, the rest
rejected as duplicates naming what they repeat, seeds count, the sample target holds."""

from __future__ import annotations

from pathlib import Path

import orjson
from conftest import EXAMPLE_SEEDS
from fakes import Call, FakeBackend, HashEmbedder, scores
from test_scheduler import records, request

from gra_local.core.engine.scheduler import Run

SAME = "Explain how a hash map handles collisions."


def run_dedup(out: Path, script, **opts):
    # dedup bookkeeping only: the scripted answers are off-topic for a bag-of-words embedder
    req = request(out, ["a", "b", "c"], dedup_threshold=0.9, **({"relevance": False} | opts))
    req.embedder = HashEmbedder()
    backend = FakeBackend(script=script)
    return Run(req, backend, stop=backend.stop).execute(), backend


def test_same_instruction_is_kept_once_highest_mu_first(tmp_path: Path) -> None:
    def script(call: Call):
        if call.role == "draft":
            return {"keywords": ["hash", "map", "collision"], "summary": "Hash maps.",
                    "instruction": SAME}
        if call.role == "review_b":  # a higher μ for the later attempt
            return scores(10 if "(attempt 2)" in str(call.request.messages) else 9)
        return None

    out = tmp_path / "out"
    result, _ = run_dedup(out, script, samples=1, max_attempts=3, batch=3)
    accepted = records(out, "accepted.jsonl")
    dups = [r for r in records(out, "rejected.jsonl") if r["reason"] == "duplicate"]
    assert len(accepted) == 1
    # The sample target was met by the first keeper: the rest stay in the journal or are
    # duplicates of it, never accepted.
    for dup in dups:
        assert dup["duplicate_of"] == accepted[0]["id"] and dup["similarity"] >= 0.9
        assert "similarity" in dup["reason_detail"]
    assert result.run_json.dedup.enabled is True
    assert result.run_json.dedup.threshold == 0.9


def test_duplicates_are_replaced_by_new_attempts(tmp_path: Path) -> None:
    def script(call: Call):
        if call.role == "draft" and call.request.seed % 2 == 0:
            return {"keywords": ["hash", "map", "collision"], "summary": "Hash maps.",
                    "instruction": SAME}
        return None

    out = tmp_path / "out"
    result, _ = run_dedup(out, script, samples=3, max_attempts=20, batch=2)
    accepted = records(out, "accepted.jsonl")
    assert len(accepted) == 3
    assert sum(r["instruction"] == SAME for r in accepted) <= 1
    by_reason = result.run_json.counts.by_reason
    assert by_reason.get("duplicate", 0) == sum(
        1 for r in records(out, "rejected.jsonl") if r["reason"] == "duplicate")


def test_copy_of_a_seed_is_a_duplicate_of_that_seed(tmp_path: Path) -> None:
    first = orjson.loads(EXAMPLE_SEEDS.read_bytes().splitlines()[0])
    seed_text = first["instruction"] + (f"\n\n{first['input']}" if first.get("input") else "")

    def script(call: Call):
        if call.role == "draft":
            return {"keywords": ["copy", "of", "seed"], "summary": "A copy.",
                    "instruction": seed_text}
        return None

    out = tmp_path / "out"
    run_dedup(out, script, samples=1, max_attempts=2, batch=2, seed_pool=64)
    dups = [r for r in records(out, "rejected.jsonl") if r["reason"] == "duplicate"]
    assert len(dups) == 2
    assert all(d["duplicate_of"] == "seed line 1" for d in dups)


def test_resume_rebuilds_the_index_from_the_files(tmp_path: Path) -> None:
    def script(call: Call):
        if call.role == "draft":
            return {"keywords": ["hash", "map", "collision"], "summary": "Hash maps.",
                    "instruction": SAME}
        return None

    out = tmp_path / "out"
    run_dedup(out, script, samples=1, max_attempts=1, batch=1)
    assert len(records(out, "accepted.jsonl")) == 1
    # A second session asking for more: the kept sample is a reference again.
    result, _ = run_dedup(out, script, samples=2, max_attempts=2, batch=1)
    (dup,) = [r for r in records(out, "rejected.jsonl") if r["reason"] == "duplicate"]
    assert dup["duplicate_of"] == records(out, "accepted.jsonl")[0]["id"]
    assert result.run_json.dedup.references >= 2
