"""End to end on the real embedded SmolLM2-135M through real llama.cpp worker processes."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS

from gra_local.core.records import Record

pytestmark = pytest.mark.e2e

# Short answers keep the test quick; everything else is the shipped default.
MODELS = """[[models]]
name = "smol"
path = "{path}"
n_ctx = 2048
[models.sampling.generator]
temperature = 0.8
max_tokens = 160
repeat_penalty = 1.1
"""


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "gra_local.cli", *map(str, args)]


def models_file(tmp_path: Path, model: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(MODELS.format(path=model), encoding="utf-8")
    return path


def read(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


def resume_loses_nothing(args: list[str], out: Path) -> tuple[list[dict], dict]:
    """Run `args` again (a resume) and check every attempt is decided once or still in
    flight in the journal; the records and run.json."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    recs = read(out / "accepted.jsonl") + read(out / "rejected.jsonl")
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)), "a record was written twice"
    run = orjson.loads((out / "run.json").read_bytes())
    journal = {r["id"] for r in read(out / "journal.jsonl")}
    pending = {i for i in journal if not i.startswith("k")} - set(ids)
    expected = {f"r1-{n:06d}" for n in range(1, run["counts"]["attempts"] + 1)}
    assert set(ids) | pending == expected, "an attempt was lost"
    judged = [r["id"] for r in read(out / "canaries.jsonl")]  # canaries (on by default)
    assert len(judged) == len(set(judged)), "a canary was judged twice"
    assert {i for i in journal if i.startswith("k")} <= set(judged), "a canary was lost"
    return recs, run


def test_short_run_writes_full_schema(tmp_path: Path, smol_model: Path) -> None:
    """Also: on a machine where the model was never benched, its first load measures its
    speed and the run's ETA is printed within the first 10 s."""
    out = tmp_path / "out"
    start = time.monotonic()
    proc = subprocess.Popen(cli("run", EXAMPLE_SEEDS, "--out", out, "--models",
                                models_file(tmp_path, smol_model), "--samples", "1",
                                "--max-attempts", "3", "--seed-pool", "6"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, env={**os.environ, "GRA_LOCAL_SPEED_PROBE": "1"})
    assert proc.stdout is not None
    lines, eta_at = [], None
    for line in proc.stdout:  # progress (stderr) and the summary (stdout), as they come
        if eta_at is None and line.startswith("predicted duration: about "):
            eta_at = time.monotonic() - start
        lines.append(line)
    output = "".join(lines)
    assert proc.wait(timeout=600) == 0, output
    assert "Traceback" not in output
    assert eta_at is not None and eta_at < 10, output
    recs = read(out / "accepted.jsonl") + read(out / "rejected.jsonl")
    # --samples 1 --max-attempts 3: one to three candidates decided, at most one kept
    assert 1 <= len(recs) <= 3, "a run must decide candidates"
    assert len(read(out / "accepted.jsonl")) <= 1
    for rec in recs:
        Record.model_validate(rec)
        assert rec["models"][0]["quantization"] == "Q4_1" and len(rec["models"][0]["sha256"]) == 64
        assert rec["tokens"]["prompt"] > 0 and rec["tokens"]["completion"] > 0
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["loads"] == {"smol": 1}
    assert run["counts"]["accepted"] + run["counts"]["rejected"] == len(recs)
    assert run["judge_validity"]["smol"]["structured_calls"] > 0
    assert run["prefix_cache"]["review_a"]["prompt_evaluated"] < run["prefix_cache"]["review_a"]["prompt_tokens"]
    assert run["eta"]["predicted_seconds"] > 0
    assert "status:" in output and "smol" in output
    assert "decided by: " in output  # the CLI says what decided (tests/tui/test_dashboard_real_run.py checks it)
    assert (out / "logs" / "smol.log").stat().st_size > 0  # llama.cpp talked to the log, not us


def test_disk_full_mid_run_is_one_line_and_the_resume_loses_and_repeats_nothing(
        tmp_path: Path, smol_model: Path) -> None:
    """`ulimit -f 8` (8 KiB a file) stands for a full disk: the journal (or run.json)
    outgrows it in the second batch. The model's log outgrows it first, during the load,
    which must not kill the worker."""
    out = tmp_path / "out"
    args = cli("run", EXAMPLE_SEEDS, "--out", out, "--models", models_file(tmp_path, smol_model),
               "--samples", "1", "--max-attempts", "4", "--batch", "2", "--seed-pool", "4",
               "--no-dedup", "--no-relevance", "--quiet")  # no embedding cache: the run dir fills

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 1024, 8 * 1024))

    full = subprocess.run(args, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                          preexec_fn=small_files)
    assert full.returncode == 2, full.stderr
    assert "Traceback" not in full.stderr
    errors = [x for x in full.stderr.splitlines() if x.startswith("gra-local: error:")]
    assert len(errors) == 1, full.stderr
    assert errors[0].startswith(f"gra-local: error: cannot write {out}{os.sep}"), errors[0]
    assert errors[0].endswith("[Errno 27] File too large"), errors[0]
    assert (out / "logs" / "smol.log").stat().st_size == 8 * 1024  # the log hit it first

    _, run = resume_loses_nothing(args, out)
    assert [s["status"] for s in run["sessions"]] == ["failed", run["status"]]
