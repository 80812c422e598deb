"""`gra-local models discover [DIR ...] [--add] [--no-defaults] [--hash]`."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import tomllib

from gra_local.core import paths
from gra_local.core.config import Role, load_registry, parse_registry
from gra_local.core.errors import ConfigError
from gra_local.models import default as default_model
from gra_local.models.discover import discover
from gra_local.models.found import NAME_MAX, Found

REGISTRY_HEADER = "# gra-local user registry; keys are documented in the project's models.toml\n"


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


def _toml_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def register_found(found: list[Found], registry_path: Path | None = None
                   ) -> tuple[Path, list[tuple[str, Found]], list[tuple[Found, str]]]:
    """Append every usable model not yet registered (by resolved path) to the user registry,
    all roles, names kept unique; written atomically.  Returns (registry, added, skipped)."""
    user = registry_path or paths.user_registry_path()
    if user.is_file():
        registry = load_registry(user)
        text = user.read_text(encoding="utf-8")
    else:
        registry, text = None, REGISTRY_HEADER
    specs = registry.models if registry else []
    registered = {Path(os.path.realpath(default_model.default_model_path(paths.data_dir())
                                        if m.is_default else m.path)) for m in specs}
    taken = {m.name for m in specs}
    roles = "[" + ", ".join(f'"{r.value}"' for r in Role) + "]"
    added: list[tuple[str, Found]] = []
    skipped: list[tuple[Found, str]] = []
    entries: list[str] = []
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
        entries.append(f"\n[[models]]\nname = {_toml_str(name)}\npath = {_toml_str(str(f.path))}\n"
                       f"roles = {roles}\n")
        added.append((name, f))
    if not entries:
        return user, added, skipped
    new_text = text.rstrip("\n") + "\n" + "".join(entries)
    parse_registry(tomllib.loads(new_text), str(user))  # never write a registry that won't load
    _write_atomically(user, new_text)
    return user, added, skipped


def _write_atomically(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the user registry ({exc.strerror or exc})") from None
