"""Ctrl-C (or SIGTERM) while `gra-local run` checks its models, before the run starts:
it stops at once, writes nothing to the output directory and says so in one line, exit
130. The model is a tiny GGUF padded (sparsely) to gigabytes, so its hash takes long
enough to be interrupted; the signal is sent once the CLI has the file open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLE_SEEDS, write_models_toml
from ggufs import write_tiny_gguf

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

PADDED = 8 << 30
"""Bytes: minutes of hashing on a slow machine, seconds on a fast one; no disk (sparse)."""


def has_open(pid: int, path: Path) -> bool:
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_models_are_hashed_writes_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    gguf = write_tiny_gguf(tmp_path / "big.gguf")
    os.truncate(gguf, PADDED)
    models = write_models_toml(tmp_path / "models.toml", [("big", gguf)], "n_threads = 1")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "gra_local.cli", "run", str(EXAMPLE_SEEDS),
                             "--out", str(out), "--models", str(models), "--no-dedup", "--quiet"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and not has_open(proc.pid, gguf) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    sent = time.monotonic()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stdout + stderr, stderr
    assert stderr.strip().splitlines() == [
        "gra-local: interrupted while the run was being prepared: it did not start, nothing "
        f"was written to {out}"], stderr
    assert not out.exists()
    assert time.monotonic() - sent < 10  # at once, not after the hash
