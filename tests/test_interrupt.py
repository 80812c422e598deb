"""Ctrl-C on a real run (tiny GGUF through real llama.cpp workers): finish the current
call, write run.json, exit 130, and resume on the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS, write_models_toml
from procs import workers


def start(tmp_path: Path, tiny_gguf: Path) -> tuple[list[str], subprocess.Popen[str], Path]:
    """A long run, started and waited for until a batch is under way (and its worker up)."""
    models = write_models_toml(tmp_path / "models.toml", [("tiny", tiny_gguf)])
    out = tmp_path / "out"
    args = [sys.executable, "-m", "gra_local.cli", "run", str(EXAMPLE_SEEDS), "--out", str(out),
            "--models", str(models), "--samples", "200", "--max-attempts", "200",
            "--seed-pool", "4", "--batch", "6", "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.stat().st_size > 8_000 and (
                not sys.platform.startswith("linux") or workers(proc.pid)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    return args, proc, out


def test_ctrl_c_saves_and_resumes(tmp_path: Path, tiny_gguf: Path) -> None:
    args, proc, out = start(tmp_path, tiny_gguf)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "stopping after the current model call" in stderr
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["status"] == "interrupted"
    assert "status: interrupted" in stdout

    # Resume without new batches: finish what was in flight, then stop (tiny model: fast).
    attempts = run["counts"]["attempts"]
    args[args.index("--max-attempts") + 1] = str(attempts)
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["sessions"][0]["status"] == "interrupted"
    assert run["sessions"][-1]["status"] in ("complete", "exhausted")
    ids = [orjson.loads(x)["id"] for name in ("accepted.jsonl", "rejected.jsonl")
           for x in (out / name).read_bytes().splitlines()]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == [f"r1-{n:06d}" for n in range(1, attempts + 1)]  # all decided, none lost


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_second_ctrl_c_still_leaves_an_interrupted_resumable_run(tmp_path: Path, tiny_gguf: Path) -> None:
    """The worker is stopped (SIGSTOP), so the first Ctrl-C's cancel goes unanswered; the
    second stops at once, mid-call: run.json still says `interrupted`, never `failed`, and
    the next run resumes with nothing lost or doubled."""
    args, proc, out = start(tmp_path, tiny_gguf)
    (worker,) = workers(proc.pid)
    os.kill(worker, signal.SIGSTOP)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    assert "stopping after the current model call" in proc.stderr.readline() + proc.stderr.readline()
    time.sleep(0.5)  # the stopped worker does not answer the cancel
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "gra-local: interrupted" in stderr
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["status"] == "interrupted"
    for _ in range(50):  # the stopped worker was killed, not left behind
        if not Path(f"/proc/{worker}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists()

    attempts = run["counts"]["attempts"]
    args[args.index("--max-attempts") + 1] = str(attempts)
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr
    ids = [orjson.loads(x)["id"] for name in ("accepted.jsonl", "rejected.jsonl")
           for x in (out / name).read_bytes().splitlines()]
    assert len(ids) == len(set(ids))
    # the second Ctrl-C may land while a batch is being journaled, before run.json counts
    # it: the resume finishes those candidates too (from the journal), so at least as many
    assert len(ids) >= attempts
    assert sorted(ids) == [f"r1-{n:06d}" for n in range(1, len(ids) + 1)]
