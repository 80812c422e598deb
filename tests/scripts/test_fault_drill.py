"""scripts/fault_drill.py --quick: three SIGKILLs of a real run on the embedded model (every
other one mid-batch, just after a model call was journaled), each resumed, lose, repeat and
hang nothing, canaries included; the last line is the drill's figure line.

This is the suite's kill-and-resume test on a real run (test_e2e.py once had one of its own,
a single kill: a repeat), so it is marked `e2e`, not `bench`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

FIGURE = re.compile(r"^faults=(\d+) lost=(\d+) duplicated=(\d+) tracebacks=(\d+) hangs=(\d+)$")


@pytest.mark.e2e
def test_quick_drill_loses_and_repeats_nothing(tmp_path: Path, smol_model: Path) -> None:
    report = tmp_path / "drill.json"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "fault_drill.py"), "--quick",
                           "--model", str(smol_model), "--json", str(report)],
                          cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    m = FIGURE.match(lines[-1])
    assert m, f"last line is not the figure line: {lines[-1]!r}\n{proc.stderr[-3000:]}"
    faults, lost, duplicated, tracebacks, hangs = map(int, m.groups())
    assert faults == 3, proc.stdout  # --quick: three kill points, each one injected
    assert (lost, duplicated, tracebacks, hangs) == (0, 0, 0, 0), proc.stdout[-4000:]
    assert proc.returncode == 0, proc.stdout[-4000:]
    data = json.loads(report.read_text())
    assert data["counts"] == {"faults": 3, "lost": 0, "duplicated": 0, "tracebacks": 0, "hangs": 0}
    checks = [e for e in data["events"] if "status" in e]
    assert checks and all(e["status"] in ("complete", "exhausted") and e["decided"] >= 1
                          for e in checks)
    assert sum(1 for e in data["events"] if e["case"] == "kill" and "delay" in e) == 3
