"""`gra-local models discover [DIR ...] [--add] [--no-defaults] [--hash]`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gra_local.core import paths
from gra_local.core.config import ModelSpec, Role
from gra_local.models import embedded as default_model
from gra_local.models.discover import discover
from gra_local.models.found import NAME_MAX, Found
from gra_local.models.registry import read_user_registry, save_user_registry


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def human_params(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    return f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


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


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate = name[: NAME_MAX - len(suffix)] + suffix
        n += 1
    taken.add(candidate)
    return candidate


def register_found(found: list[Found]) -> tuple[Path, list[tuple[str, Found]], list[tuple[Found, str]]]:
    """Register every usable model not yet registered (by resolved path) in the user
    registry, all roles, names kept unique. Returns (registry path, added, skipped)."""
    registry = read_user_registry()
    registered = {Path(os.path.realpath(default_model.default_model_path(paths.data_dir())
                                        if m.is_default else m.path)) for m in registry.models}
    taken = {m.name for m in registry.models}
    added: list[tuple[str, Found]] = []
    skipped: list[tuple[Found, str]] = []
    for f in found:
        if not f.usable:
            continue
        assert f.info is not None
        if registered & {f.real_path, *(d.real_path for d in f.duplicates)}:
            skipped.append((f, "already registered"))
            continue
        if not f.info.chat_template:
            skipped.append((f, "no chat template; register it with `gra-local models add PATH "
                               "--chat-format FORMAT`"))
            continue
        name = _unique(f.name, taken)
        registered.add(f.real_path)
        registry.models.append(ModelSpec(name=name, path=str(f.path), roles=list(Role)))
        added.append((name, f))
    if not added:
        return paths.user_registry_path(), added, skipped
    return save_user_registry(registry), added, skipped
