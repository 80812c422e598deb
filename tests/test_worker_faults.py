"""A model worker that stops answering or crashes mid-run (issue 12, item 2), end to end on
the real embedded SmolLM2-135M: the run kills and restarts it, counts its calls as
failures, and finishes with every attempt decided once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS
from procs import workers
from test_e2e import cli, models_file, read

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]


def wait_for(what: str, check, proc: subprocess.Popen, limit: float = 300):  # noqa: ANN001
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        assert proc.poll() is None, f"the run ended before {what}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_stopped_then_a_crashed_worker_do_not_stop_the_run(tmp_path: Path, smol_model: Path) -> None:
    out = tmp_path / "out"
    args = cli("run", EXAMPLE_SEEDS, "--out", out, "--models", models_file(tmp_path, smol_model),
               "--samples", "2", "--max-attempts", "4", "--batch", "2", "--seed-pool", "6",
               "--judge", "panel", "--panel", "1", "--canaries", "0")  # every attempt decided, as the
    # ids below need; one reviewer and no canaries: the faults, not the judging, are tested here
    env = dict(os.environ, GRA_LOCAL_STALL_S="3")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        journal = out / "journal.jsonl"
        first = wait_for("a worker mid-batch", lambda: journal.exists() and journal.stat().st_size > 0
                         and workers(proc.pid), proc)[0]
        os.kill(first, signal.SIGSTOP)  # silent from now on: killed after 3 s, a fresh one starts
        second = wait_for("a fresh worker", lambda: [p for p in workers(proc.pid) if p != first], proc)[0]
        time.sleep(1.0)
        os.kill(second, signal.SIGSEGV)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "gave no sign of life" in stderr and "killed by SIGSEGV" in stderr
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["status"] in ("complete", "exhausted")
    assert run["worker_failures"]["smol"]["losses"] == 2
    assert run["worker_failures"]["smol"]["dropped"] is None
    assert run["loads"]["smol"] in (2, 3)  # a fresh worker after each loss, if calls were left
    ids = [r["id"] for r in read(out / "accepted.jsonl") + read(out / "rejected.jsonl")]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == [f"r1-{n:06d}" for n in range(1, run["counts"]["attempts"] + 1)]
    assert "status:" in stdout
