"""`gra-local export DIR --format alpaca|sharegpt|messages|jsonl --out FILE`: a run's
records as a training file, with a dataset card next to it."""

from __future__ import annotations

import argparse
from pathlib import Path

from gra_local.core.export import export_run


def export_command(args: argparse.Namespace) -> int:
    result = export_run(Path(args.run_dir), args.format, Path(args.out),
                        include_rejected=bool(getattr(args, "include_rejected", False)),
                        min_score=getattr(args, "min_score", None))
    what = "records" if result.exported != 1 else "record"
    print(f"wrote {result.exported} {what} ({result.format}) to {result.out}")
    notes = []
    if result.overridden:
        notes.append(f"{result.overridden} decision override(s) applied")
    if result.filtered_by_score:
        notes.append(f"{result.filtered_by_score} below --min-score left out")
    if notes:
        print("  " + "; ".join(notes))
    print(f"dataset card: {result.card}")
    return 0
