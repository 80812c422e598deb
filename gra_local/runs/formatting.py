"""run.json figures as short text, alike in the CLI summary and the app's quality report."""

from __future__ import annotations

MISSING = "–"


def num(x: float | None, digits: int = 2) -> str:
    return MISSING if x is None else f"{x:.{digits}f}"


def pct(x: float | None) -> str:
    return MISSING if x is None else f"{x:.0%}"
