"""`gra-local export --format preference` through the real CLI in a subprocess: a
successful export (exit 0, pairs, contested file and card written) and the zero-pairs
error (exit 2, one `gra-local: error:` line, nothing written)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ERROR = "gra-local: error:"


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gra_local.cli", *map(str, args)], check=False,
                          env=dict(os.environ), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)


def _rec(n: int, decision: str, reason: str, mean: float | None, keywords: list[str]) -> dict:
    adjudicated = reason.startswith("adjudicated")
    return {"id": f"r1-{n}", "round": 1, "attempt": n, "instruction": f"Instruction {n}.",
            "response": f"Response {n}.", "domain": "qa", "keywords": keywords, "summary": "s",
            "decision": decision, "reason": reason, "reason_detail": "d",
            "reviews": [{"model": "rev", "score": mean}], "mean": mean, "std": 2.0 if adjudicated else 0.0,
            "adjudication": {"model": "arb", "score": 9.0, "kept": True} if adjudicated else None}


def make_run(tmp: Path, records: list[dict]) -> Path:
    run = tmp / "run"
    run.mkdir()
    for decision in ("accepted", "rejected"):
        rows = [json.dumps(r) + "\n" for r in records if r["decision"] == decision]
        (run / f"{decision}.jsonl").write_text("".join(rows))
    (run / "run.json").write_text(json.dumps({"schema_version": 1, "status": "complete"}))
    return run


def test_preference_export(tmp_path: Path) -> None:
    kw = ["Sun", "moon", "tide"]
    run = make_run(tmp_path, [_rec(1, "accepted", "accepted", 9.0, kw),
                              _rec(2, "accepted", "adjudicated_accept", 8.2, kw),
                              _rec(3, "rejected", "low_score", 4.0, ["tide", "sun ", "MOON"]),
                              _rec(4, "rejected", "instruction_failed", None, kw)])
    out = tmp_path / "dpo.jsonl"
    proc = cli("export", run, "--format", "preference", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "wrote 1 preference pair (preference)" in proc.stdout
    (pair,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (pair["chosen_id"], pair["rejected_id"], pair["keywords"]) == ("r1-1", "r1-3", ["moon", "sun", "tide"])
    contested = [json.loads(line) for line in (tmp_path / "dpo.contested.jsonl").read_text().splitlines()]
    assert [r["id"] for r in contested] == ["r1-2"]
    assert "## Preference pairs" in (tmp_path / "dpo.card.md").read_text()


def test_zero_pairs_exits_2_with_one_line(tmp_path: Path) -> None:
    run = make_run(tmp_path, [_rec(1, "accepted", "accepted", 9.0, ["a", "b", "c"]),
                              _rec(2, "rejected", "low_score", 3.0, ["x", "y", "z"]),
                              _rec(3, "rejected", "generation_failed", None, ["a", "b", "c"])])
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    proc = cli("export", run, "--format", "preference", "--out", out_dir / "dpo.jsonl")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), proc.stderr
    assert "no keyword triple has both an accepted and a rejected judged response" in lines[0]
    assert "generation_failed 1" in lines[0]
    assert list(out_dir.iterdir()) == []


def test_contested_flag_and_option_error(tmp_path: Path) -> None:
    kw = ["a", "b", "c"]
    run = make_run(tmp_path, [_rec(1, "accepted", "accepted", 9.0, kw),
                              _rec(2, "rejected", "adjudicated_reject", 5.0, kw)])
    proc = cli("export", run, "--format", "alpaca", "--out", tmp_path / "a.jsonl", "--contested")
    assert proc.returncode == 0, proc.stderr
    assert f"contested: 1 adjudicated sample to {tmp_path / 'a.contested.jsonl'}" in proc.stdout
    (row,) = [json.loads(line) for line in (tmp_path / "a.contested.jsonl").read_text().splitlines()]
    assert row == {"instruction": "Instruction 2.", "input": "", "output": "Response 2."}
    proc = cli("export", run, "--format", "preference", "--out", tmp_path / "p.jsonl", "--include-rejected")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR) and "--include-rejected" in lines[0]
    assert not (tmp_path / "p.jsonl").exists()
