"""End to end on the real embedded SmolLM2-135M and the real all-MiniLM-L6-v2: two rounds
with dedup, re-annotation and canaries; review-only mode on a small dataset."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS
from test_e2e import cli, models_file, read

from gra_local.core.records import Record

pytestmark = pytest.mark.e2e


def test_two_rounds_with_dedup_and_canaries(tmp_path: Path, smol_model: Path, minilm) -> None:
    out = tmp_path / "out"
    # τ 0: whatever passes the instruction check is kept, so round 1 feeds round 2 even
    # with a 135M judge (at τ 8 it keeps nothing).
    proc = subprocess.run(cli("run", EXAMPLE_SEEDS, "--out", out, "--models",
                              models_file(tmp_path, smol_model), "--samples", "1", "--rounds", "2",
                              "--max-attempts", "4", "--batch", "2", "--tau", "0",
                              "--seed-pool", "6", "--canaries", "2", "--quiet"),
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    run = orjson.loads((out / "run.json").read_bytes())
    recs = read(out / "accepted.jsonl") + read(out / "rejected.jsonl")
    for rec in recs:
        Record.model_validate(rec)
    assert {r["round"] for r in recs} == {1, 2}
    assert set(run["rounds"]) == {"1", "2"}
    assert run["dedup"]["enabled"] and run["dedup"]["embedder"] == "all-MiniLM-L6-v2"
    kept_round_1 = [r for r in read(out / "accepted.jsonl") if r["round"] == 1]
    pool_round_1 = [e for e in read(out / "pool.jsonl") if e["round"] == 1]
    assert len(pool_round_1) == len(kept_round_1) == run["rounds"]["1"]["pool_added"]
    canaries = read(out / "canaries.jsonl")
    assert canaries and not {c["id"] for c in canaries} & {r["id"] for r in recs}
    assert "smol" in run["calibration"]["reviewers"]
    assert "per round:" in proc.stdout and "reviewers: panel agreement" in proc.stdout


def test_review_only_on_a_small_dataset(tmp_path: Path, smol_model: Path, minilm) -> None:
    rows = [orjson.loads(x) for x in EXAMPLE_SEEDS.read_bytes().splitlines()[:3]]
    data = tmp_path / "mine.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps(r) for r in rows + [{"instruction": "No answer."}]))
    out = tmp_path / "reviewed"
    # --judge panel: the panel judges every pair, so its probabilities reach the records
    # (with the default, the embedded panel is not shown informative and is not asked).
    proc = subprocess.run(cli("review", data, "--out", out, "--models",
                              models_file(tmp_path, smol_model), "--judge", "panel", "--quiet"),
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    recs = read(out / "accepted.jsonl") + read(out / "rejected.jsonl") + read(out / "unverified.jsonl")
    assert sorted(r["source"] for r in recs) == [f"mine.jsonl line {i}" for i in (1, 2, 3)]
    assert all(r["generator"] == "" and r["instruction"] for r in recs)
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["seeds"]["without_response"] == 1 and run["loads"] == {"smol": 1}
    # issue 14's defaults: canaries from the input's pairs, weights from them, token
    # probabilities behind every verdict and score, confidence routing
    assert run["calibration"]["action"] == "weight" and run["calibration"]["canaries_judged"] > 0
    assert run["routing"] is not None
    # issue 20: the scoring model read every answer; each piece of evidence is measured
    assert run["likelihood"] == {"enabled": True, "model": "smol", "scored": run["likelihood"]["scored"],
                                 "note": None, "unscored": {}} and run["likelihood"]["scored"] >= len(recs)
    for rec in recs:
        lk = rec["likelihood"]
        assert lk["model"] == "smol" and lk["tokens"] > 0 and lk["mean_logprob"] < 0
        assert lk["end_logprob"] is not None and lk["low_tail"] <= lk["mean_logprob"]
    evidence = run["calibration"]["evidence"]
    assert {"likelihood pmi", "likelihood end_logprob", "reviewer smol: scores"} <= set(evidence)
    reviews = [rv for r in recs for rv in r["reviews"]]
    assert all(rv["pass_probs"] is not None and set(rv["pass_probs"]) == {"reasonable", "complete", "clear"}
               for rv in reviews if rv["verdict"] is not None)
    probed = [rv for rv in reviews if rv["score_probs"] is not None]
    assert probed, "no score came with its distribution"
    for rv in probed:
        expected = [sum(int(s) * p for s, p in d.items()) for d in rv["score_probs"].values()]
        assert rv["score"] == pytest.approx(sum(expected) / 6, abs=1e-4)
        assert rv["sampled_score"] == pytest.approx(sum(v for k, v in rv["scores"].items()
                                                        if k != "feedback") / 6)
        assert rv["weight"] is not None
