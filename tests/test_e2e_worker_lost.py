"""End to end with a real llama.cpp worker killed (issue 21, "a fault is never a verdict"):
`gra-local run` on one tiny GGUF playing every role, its worker SIGKILLed three times. Each
loss starts a fresh worker and asks the same calls again; the third drops the model, and
since no other model can play its roles the run ends interrupted in one line (exit 2) with
no record saying a model gave no reply. Rerunning the same command finishes the run with
every id once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
from conftest import EXAMPLE_SEEDS
from ggufs import write_tiny_gguf

WORKER = b"gra_local.backends.llama.worker"


def workers_of(pid: int) -> list[int]:
    """The llama.cpp worker processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and WORKER in cmdline:
            found.append(int(entry.name))
    return found


def kill_workers(proc: subprocess.Popen[str], log: Path, times: int) -> list[int]:
    """SIGKILL the worker of `proc` while it decodes for the rounds (the seeds annotated:
    pool.jsonl written; its llama.cpp log shows a decode since the last kill), `times` times."""
    killed: list[int] = []
    seen = 0
    while len(killed) < times and proc.poll() is None:
        if not (log.parent.parent / "pool.jsonl").exists():
            seen = log.stat().st_size if log.exists() else 0
            time.sleep(0.02)
            continue
        text = log.read_bytes() if log.exists() else b""
        fresh = [w for w in workers_of(proc.pid) if w not in killed]
        if fresh and b"set_abort_callback" in text[seen:]:
            try:
                os.kill(fresh[0], signal.SIGKILL)
                killed.append(fresh[0])
            except ProcessLookupError:
                pass
            seen = len(text)
        time.sleep(0.05)
    return killed


def records(out: Path) -> list[dict]:
    return [orjson.loads(line) for name in ("accepted.jsonl", "rejected.jsonl")
            if (out / name).exists() for line in (out / name).read_bytes().splitlines()]


def test_a_worker_killed_three_times_interrupts_and_a_rerun_finishes(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "endless.gguf", eos_bias=-20)  # each call runs to max_tokens
    models = tmp_path / "models.toml"
    models.write_text(f'[[models]]\nname = "tiny"\npath = "{gguf}"\nn_ctx = 2048\n'
                      'n_threads = 1\n', encoding="utf-8")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "gra_local.cli", "run", str(EXAMPLE_SEEDS), "--out", str(out),
            "--models", str(models), "--samples", "2", "--max-attempts", "4", "--seed-pool", "3",
            "--panel", "1", "--no-dedup", "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    killed: list[int] = []
    log = out / "logs" / "tiny.log"
    killer = threading.Thread(target=lambda: killed.extend(kill_workers(proc, log, 3)))
    killer.start()
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        killer.join(timeout=10)
    assert len(killed) == 3, stderr
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert "model 'tiny'" in stderr and "rerun the same command" in stderr, stderr
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["status"] == "interrupted"
    assert run["worker_failures"]["tiny"]["losses"] == 3 and run["worker_failures"]["tiny"]["dropped"]
    # no verdict came of the faults: nothing says the model gave no reply
    assert not [r["id"] for r in records(out) if "no reply" in r["reason_detail"]]
    assert "no reply" not in str(run["judge_validity"])

    again = subprocess.run(args, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["status"] in ("complete", "exhausted") and len(run["sessions"]) == 2
    ids = [r["id"] for r in records(out)]
    attempts = {f"r1-{n:06d}" for n in range(1, run["counts"]["attempts"] + 1)}
    assert len(ids) == len(set(ids)) and set(ids) <= attempts
    if run["status"] == "exhausted":  # every attempt decided, the faulted ones too
        assert set(ids) == attempts
    assert not [r["id"] for r in records(out) if "no reply" in r["reason_detail"]]
