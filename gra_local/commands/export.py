"""`gra-local export DIR --format alpaca|sharegpt|messages|jsonl|preference --out FILE`: a
run's records (or chosen/rejected pairs) as a training file, with a dataset card next to
it and, for preference or with --contested, the adjudicated samples in
`<stem>.contested<suffix>`."""

from __future__ import annotations

import argparse
from pathlib import Path

from gra_local.runs.export import export_run


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def export_command(args: argparse.Namespace) -> int:
    result = export_run(Path(args.run_dir), args.format, Path(args.out),
                        include_rejected=bool(getattr(args, "include_rejected", False)),
                        min_score=getattr(args, "min_score", None),
                        contested=bool(getattr(args, "contested", False)))
    what = "preference pair" if result.pairing is not None else "record"
    print(f"wrote {_plural(result.exported, what)} ({result.format}) to {result.out}")
    notes = []
    if result.pairing is not None:
        stats = result.pairing
        notes.append(f"{_plural(stats.triples_paired, 'keyword triple')} paired, "
                     f"{stats.rejected_unpaired} judged rejected without an accepted partner")
    if result.overridden:
        notes.append(f"{result.overridden} decision override(s) applied")
    if result.unverified:
        notes.append(f"{result.unverified} unverified left out (no evidence judged them)")
    if result.filtered_by_score:
        side = "accepted " if result.pairing is not None else ""
        notes.append(f"{result.filtered_by_score} {side}below --min-score left out")
    if notes:
        print("  " + "; ".join(notes))
    if result.contested is not None:
        print(f"contested: {_plural(result.contested_count, 'adjudicated sample')} to "
              f"{result.contested}")
    print(f"dataset card: {result.card}")
    return 0
