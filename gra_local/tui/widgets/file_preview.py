"""What New run's preview box shows of the file a run reads: the seed file's usable seeds
and bad lines (the scan `gra-local run` makes), or a review's pairs and bad lines (the
loaders `gra-local review` uses). Called by the screen's worker once the form is drawn;
a file that cannot be read gives its error as the preview, never an exception."""

from __future__ import annotations

import random
from pathlib import Path

from gra_local.core.engine.review_only import ReviewData, read_review_data
from gra_local.core.errors import GraError
from gra_local.core.seeds.scan import scan_seeds

PREVIEW_LINES = 6
"""Lines of the preview: it shares a row with the models, above the plan."""


def seeds_preview(path: Path) -> str:
    """The usable seeds, the first bad lines, a few instructions."""
    try:
        scan = scan_seeds(path, 5, random.Random(0))
    except GraError as exc:
        return f"seeds: {exc}"
    lines = [f"seeds: {scan.usable} usable, {scan.skipped} skipped ({scan.format})"]
    lines += [f"  line {s.line}: skipped, {s.reason}" for s in scan.skipped_examples[:2]]
    lines += [f"  · {' '.join(s.instruction.split())[:90]}" for s in scan.sample[:5]]
    return "\n".join(lines[:PREVIEW_LINES])


def pairs_preview(path: Path) -> str:
    """A review's input: the usable pairs, then for each kind of bad line how many and the
    first (a record that is not a pair is skipped; one with no response is not reviewed),
    then a few pairs."""
    try:
        lines = pairs_lines(read_review_data(path))
    except GraError as exc:
        return f"pairs: {exc}"
    return "\n".join(lines[:PREVIEW_LINES])


def pairs_lines(data: ReviewData) -> list[str]:
    lines = [f"pairs: {len(data.pairs)} usable ({data.format})"]
    if data.skipped:
        first = data.skipped[0]
        lines.append(f"  {len(data.skipped)} bad line(s) skipped, the first line {first.line}: "
                     f"{first.reason}")
    if data.without_response:
        lines.append(f"  {len(data.without_response)} record(s) with no response, not reviewed, "
                     f"the first line {data.without_response[0]}")
    for pair in data.pairs[:5]:
        instruction = " ".join(pair.instruction.split())[:50]
        response = " ".join((pair.response or "").split())[:36]
        lines.append(f"  · {instruction} → {response}")
    return lines
