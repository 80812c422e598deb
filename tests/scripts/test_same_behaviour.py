"""scripts/same_behaviour.py does not rot: one scripted scenario, stopped and resumed, gives
the same normalized files as a straight run's second copy, and the compare finds a change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "same_behaviour.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300)


def test_two_runs_compare_equal_and_a_change_is_found(tmp_path: Path) -> None:
    for name in ("a", "b"):
        done = run("--out", str(tmp_path / name), "--only", "review_weight")
        assert done.returncode == 0, done.stderr
    same = run("--compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert same.returncode == 0 and "0 differ" in same.stdout, same.stdout
    accepted = tmp_path / "b" / "review_weight" / "rejected.jsonl"
    accepted.write_bytes(accepted.read_bytes().replace(b"low_score", b"accepted", 1))
    changed = run("--compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert changed.returncode == 1 and "DIFFERS: review_weight/rejected.jsonl" in changed.stdout
