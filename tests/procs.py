"""Finding a run's llama.cpp worker processes (Linux: /proc), for fault-injection tests."""

from __future__ import annotations

from pathlib import Path


def workers(pid: int) -> list[int]:
    """The llama.cpp worker processes among `pid`'s children."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"gra_local.backends.llama.worker" in cmd:
                found.append(int(child))
    return found
