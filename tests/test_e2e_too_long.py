"""Samples and seeds longer than the context, end to end on the real embedded SmolLM2-135M
through the CLI and real llama.cpp workers: rejected or skipped, never a failed run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
from test_e2e import cli, models_file, read

from gra_local.core.records import Record

pytestmark = pytest.mark.e2e

LONG = "word " * 20000  # ~20k tokens: far beyond the test models' n_ctx of 2048
# An instruction SmolLM2 passes at review A (so its long response reaches review B); found
# by trying the example seeds' instructions (the factorial one passed before flash attention
# changed the decode's numerics, issue 20).
PASSING = ("Write a Python function that checks whether a string is a palindrome, ignoring upper "
           "and lower case.")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def test_review_rejects_a_too_long_pair_and_judges_the_rest(tmp_path: Path, smol_model: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", [
        {"instruction": PASSING, "output": LONG},
        {"instruction": "What is 15% of 80?", "output": "15% of 80 is 12, because 0.15 x 80 = 12."},
        {"instruction": "Summarise: " + LONG, "output": "Words."},
    ])
    out = tmp_path / "out"
    args = cli("review", data, "--out", out, "--models", models_file(tmp_path, smol_model),
               "--panel", "1", "--no-dedup", "--canaries", "0", "--quiet")  # PASSING passes alone
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "exceed" not in proc.stderr
    recs = {r["id"]: r for r in read(out / "accepted.jsonl") + read(out / "rejected.jsonl")}
    assert sorted(recs) == ["d-000001", "d-000002", "d-000003"]
    for rec in recs.values():
        Record.model_validate(rec)
    long_response, normal, long_instruction = recs["d-000001"], recs["d-000002"], recs["d-000003"]
    assert (long_response["decision"], long_response["reason"]) == ("rejected", "too_long")
    assert long_response["reason_detail"].startswith("review_b with smol: a prompt of ")
    assert long_response["reason_detail"].endswith("exceed its context of 2048 tokens")
    assert long_instruction["reason"] == "too_long"
    assert long_instruction["reason_detail"].startswith("review_a with smol: ")
    assert normal["reason"] != "too_long" and normal["source"] == "data.jsonl line 2"
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["status"] == "complete" and run["counts"]["by_reason"]["too_long"] == 2
    assert run["parse_failures"].get("smol", {}) == {}  # never counted as invalid output
    # a second session finds everything decided: no call, nothing written twice
    again = subprocess.run(args, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr
    assert len(read(out / "accepted.jsonl") + read(out / "rejected.jsonl")) == 3
    assert orjson.loads((out / "run.json").read_bytes())["status"] == "complete"


def test_run_skips_a_seed_too_long_for_the_annotator(tmp_path: Path, smol_model: Path) -> None:
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [
        {"instruction": "What is 15% of 80?", "output": "12."},
        {"instruction": "Summarise this text.", "output": LONG},
        {"instruction": "Solve for x: 3x + 7 = 22.", "output": "x = 5."},
    ])
    out = tmp_path / "out"
    proc = subprocess.run(cli("run", seeds, "--out", out, "--models", models_file(tmp_path, smol_model),
                              "--samples", "1", "--max-attempts", "1", "--panel", "1",
                              "--seed-pool", "3", "--no-dedup"),
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    said = proc.stdout + proc.stderr
    assert f"{seeds} line 2: too long for smol's context (" in said
    assert "tokens of 2048); skipped" in said
    pool = read(out / "pool.jsonl")
    assert sorted(p["source"] for p in pool) == ["seed line 1", "seed line 3"]
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["status"] in ("complete", "exhausted") and run["seeds"]["pool"] == 2
    assert len(read(out / "accepted.jsonl") + read(out / "rejected.jsonl")
               + read(out / "unverified.jsonl")) == 1
