"""The relevance check inside a run (scripted backend, bag-of-words embedder): an off-topic
answer is vetoed before any review call, with its cosine in the record; run.json counts the
calls saved; the threshold is written once and read back on resume; --no-relevance."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fakes import Call, FakeBackend, HashEmbedder
from test_scheduler import records, request

from gra_local.core.engine.scheduler import Run
from gra_local.core.errors import OutputError

ON_TOPIC = "Explain how a hash map handles collisions."
OFF_TOPIC = "Describe photosynthesis in green plants."


def script(call: Call):
    """Even seeds draft the hash-map instruction and get an answer on it; odd seeds
    draft photosynthesis and get an answer about numbers."""
    if call.role == "draft":
        text = ON_TOPIC if call.request.seed % 2 == 0 else OFF_TOPIC
        return {"keywords": ["hash", "map", "collision"], "summary": "Hash maps.",
                "instruction": text}
    if call.role == "answer":
        if "hash map" in str(call.request.messages):
            return "A hash map handles collisions by chaining entries or by probing."
        return "The answer is twice the number."
    return None


def go(out: Path, embedder: HashEmbedder | None = None, **opts):
    req = request(out, ["a", "b", "c"], **({"samples": 2, "max_attempts": 6, "batch": 6} | opts))
    req.embedder = embedder if embedder is not None else HashEmbedder()
    backend = FakeBackend(script=script)
    return Run(req, backend, stop=backend.stop).execute(), backend


def reviewed(backend: FakeBackend, text: str) -> int:
    return sum(1 for c in backend.calls if c.role.startswith("review") and text in str(c.request.messages))


def test_off_topic_answer_is_vetoed_before_review(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, backend = go(out, canaries=4, judge="panel")
    rel = result.run_json.relevance
    assert rel is not None and rel.enabled and rel.threshold is not None and rel.threshold > 0
    assert "good pairs vs" in (rel.source or "")
    vetoed = [r for r in records(out, "rejected.jsonl") if r["reason"] == "off_topic"]
    assert vetoed and all(r["instruction"] == OFF_TOPIC for r in vetoed)
    for r in vetoed:
        assert r["relevance"]["cosine"] < r["relevance"]["threshold"] == rel.threshold
        assert r["reviews"] and all(rv["verdict"] is None for rv in r["reviews"])
        assert "relevance threshold" in r["reason_detail"]
    assert reviewed(backend, OFF_TOPIC) == 0  # no review call for an off-topic answer
    accepted = records(out, "accepted.jsonl")
    assert accepted and all(r["relevance"]["cosine"] >= rel.threshold for r in accepted)
    assert rel.vetoed == len(vetoed) == result.run_json.counts.by_reason["off_topic"]
    assert rel.calls_saved == len(vetoed) * 3 * 2
    # canaries are scored, never vetoed: all judged by the panel, and listed in calibration
    rows = [orjson.loads(x) for x in (out / "canaries.jsonl").read_bytes().splitlines()]
    assert rows and all("relevance" in row and row["judgements"] for row in rows)
    line = result.run_json.calibration.relevance
    assert line is not None and line.canaries == len(rows) and line.accuracy is not None


def test_resume_keeps_the_threshold_written_at_start(tmp_path: Path) -> None:
    out = tmp_path / "out"
    go(out, samples=1)
    doc = orjson.loads((out / "run.json").read_bytes())
    first = doc["relevance"]["threshold"]
    doc["relevance"]["threshold"] = 0.0123  # what a resume must read back, not recompute
    (out / "run.json").write_bytes(orjson.dumps(doc))
    result, _ = go(out, samples=2)
    assert result.run_json.relevance.threshold == 0.0123 != first
    with pytest.raises(OutputError, match="relevance"):
        go(out, samples=2, relevance=False)  # part of the run's identity


def test_no_relevance_embeds_nothing_and_vetoes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    embedder = HashEmbedder()
    result, backend = go(out, embedder=embedder, relevance=False)
    assert embedder.calls == 0
    assert result.run_json.relevance.enabled is False
    assert "off_topic" not in result.run_json.counts.by_reason
    every = records(out, "accepted.jsonl") + records(out, "rejected.jsonl")
    assert every and all("relevance" not in r for r in every)
    assert reviewed(backend, OFF_TOPIC) > 0


def test_without_an_embedder_the_check_is_off_with_a_note(tmp_path: Path) -> None:
    out = tmp_path / "out"
    req = request(out, ["a"], samples=1)
    result = Run(req, FakeBackend()).execute()
    rel = result.run_json.relevance
    assert rel is not None and rel.enabled is False and "pull-embedder" in (rel.note or "")


def test_review_calibrates_on_the_input_pairs_and_vetoes_a_swap(tmp_path: Path) -> None:
    from test_review_only import write_data

    from gra_local.core.engine.review_only import ReviewSource

    topics = ["hash maps", "binary search", "photosynthesis", "volcanoes", "the french revolution"]
    rows = [{"instruction": f"Explain {t}.", "output": f"{t.capitalize()}: {t} explained in brief."}
            for t in topics]
    rows.append({"instruction": "Explain tides.", "output": "Binary search halves the range."})
    req = request(tmp_path / "out", ["a", "b", "c"])
    req.seeds = write_data(tmp_path / "data.jsonl", rows)
    req.embedder = HashEmbedder()
    backend = FakeBackend()
    result = Run(req, backend, stop=backend.stop, source=ReviewSource()).execute()
    rel = result.run_json.relevance
    assert rel is not None and rel.enabled and "review canary sources" in (rel.source or "")
    vetoed = [r for r in records(tmp_path / "out", "rejected.jsonl") if r["reason"] == "off_topic"]
    assert [r["instruction"] for r in vetoed] == ["Explain tides."]
    assert reviewed(backend, "Explain tides.") == 0 and rel.calls_saved == 6
