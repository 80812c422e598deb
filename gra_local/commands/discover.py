"""`gra-local models discover [DIR ...] [--add] [--no-defaults] [--hash]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from gra_local.models.describe import human_params, human_size
from gra_local.models.discover import discover
from gra_local.models.found import Found
from gra_local.models.registry import register_found


def describe(f: Found) -> str:
    """One line: name, source, quantization, size, parameters, path (or the problem)."""
    parts = f" ({len(f.parts)} parts)" if len(f.parts) > 1 else ""
    head = f"  {f.name:40} {f.source:11}"
    if f.info is None or f.problem:
        return f"{head} PROBLEM: {f.problem}  [{f.path}{parts}]"
    facts = f"{f.info.file_type:8} {human_size(f.size_bytes):>9} {human_params(f.info.parameter_count):>6}"
    note = "" if f.info.chat_template else "  (no chat template)"
    return f"{head} {facts}  {f.path}{parts}{note}"


def discover_command(args: argparse.Namespace) -> int:
    dirs = [Path(d) for d in (getattr(args, "dirs", None) or [])]
    result = discover(dirs, include_defaults=not getattr(args, "no_defaults", False),
                      hash_dedupe=getattr(args, "hash", False))
    where = ", ".join(f"{source} {path}" for source, path in result.scanned) or "nothing"
    print(f"searched: {where}")
    for f in result.found:
        print(describe(f))
        for dup in f.duplicates:
            print(f"      same model: {dup.name} ({dup.source}) {dup.path}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    usable = sum(f.usable for f in result.found)
    print(f"{len(result.found)} model(s) found: {usable} usable, {len(result.found) - usable} "
          f"with problems; {len(result.warnings)} warning(s)")
    if getattr(args, "add", False):
        registry, added, skipped = register_found(result.found)
        for name, f in added:
            print(f"added {name}: {f.path}")
        for f, why in skipped:
            print(f"not added {f.name}: {why}")
        print(f"{len(added)} model(s) added to {registry}")
    return 0
