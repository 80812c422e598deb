"""`gra-local export`: a run's decided records as a training file, plus a dataset card.

Formats: alpaca (instruction/input/output), sharegpt (conversations human/gpt), messages
(user/assistant roles), jsonl (the full records as written by the run). Decision
overrides from the results screen (overrides.jsonl) replace a record's decision. The
output file and the card are written atomically: a failed export leaves neither half
written nor a temp file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import orjson

from gra_local.core.errors import ConfigError, OutputError
from gra_local.core.journal import ACCEPTED, REJECTED, RUN_JSON, read_json, read_jsonl
from gra_local.core.results import effective_decision, load_overrides, mean_histogram
from gra_local.core.rundir import SCHEMA_VERSION

Format = Literal["alpaca", "sharegpt", "messages", "jsonl"]
FORMATS: tuple[str, ...] = ("alpaca", "sharegpt", "messages", "jsonl")


@dataclass
class ExportResult:
    out: Path
    card: Path
    format: str
    exported: int
    accepted: int  # effective accepted records read (after overrides)
    rejected: int  # effective rejected records read (after overrides)
    filtered_by_score: int = 0
    overridden: int = 0
    filters: dict[str, Any] = field(default_factory=dict)


# --- formats -------------------------------------------------------------------------


def _alpaca(r: dict) -> dict:
    return {"instruction": r["instruction"], "input": "", "output": r["response"]}


def _sharegpt(r: dict) -> dict:
    return {"conversations": [{"from": "human", "value": r["instruction"]},
                              {"from": "gpt", "value": r["response"]}]}


def _messages(r: dict) -> dict:
    return {"messages": [{"role": "user", "content": r["instruction"]},
                         {"role": "assistant", "content": r["response"]}]}


def _full(r: dict) -> dict:
    return r


CONVERTERS: dict[str, Callable[[dict], dict]] = {
    "alpaca": _alpaca, "sharegpt": _sharegpt, "messages": _messages, "jsonl": _full}


# --- reading -------------------------------------------------------------------------


def _load_run_json(run_dir: Path) -> dict:
    if not run_dir.is_dir():
        raise OutputError(f"{run_dir}: no such directory")
    doc = read_json(run_dir / RUN_JSON)
    if doc is None:
        raise OutputError(f"{run_dir}: not a gra-local run (no {RUN_JSON})")
    if not isinstance(doc, dict):
        raise OutputError(f"{run_dir / RUN_JSON}: not a gra-local run (not a JSON object)")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise OutputError(f"{run_dir / RUN_JSON}: written by another version; schema_version "
                          f"{version!r}, this gra-local reads {SCHEMA_VERSION}. Export it with the "
                          "version that wrote it, or run it again with this one")
    return doc


def _read_records(paths: Iterable[Path]) -> list[dict]:
    seen: dict[str, Path] = {}
    out: list[dict] = []
    for path in paths:
        for number, rec in enumerate(read_jsonl(path, repair=False), 1):
            if not isinstance(rec, dict) or "id" not in rec:
                raise OutputError(f"{path} record {number}: not a gra-local record (no id)")
            rid = str(rec["id"])
            if rid in seen:
                where = "twice in that file" if seen[rid] == path else f"also in {seen[rid]}"
                raise OutputError(f"{path}: duplicate id {rid!r} ({where}); refusing to export "
                                  "a dataset with duplicate records")
            seen[rid] = path
            out.append(rec)
    return out


# --- writing -------------------------------------------------------------------------


def _write_temp(path: Path, chunks: Iterable[bytes]) -> Path:
    """Write to a temp file in `path`'s folder and fsync it; the caller renames it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _write_atomic(files: list[tuple[Path, Iterable[bytes]]]) -> None:
    """Write every file to a temp file first, then rename them all into place, so a
    failure while writing leaves neither a half file nor a temp file behind."""
    temps: list[tuple[Path, Path]] = []
    try:
        for path, chunks in files:
            temps.append((_write_temp(path, chunks), path))
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)


def card_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.card.md")


def _histogram_lines(records: list[dict], width: int = 40) -> list[str]:
    edges, counts = mean_histogram(records, bins=10)
    top = max(counts) if counts else 0
    lines = []
    for lo, n in zip(edges, counts, strict=True):
        bar = "#" * (round(n / top * width) if top else 0)
        lines.append(f"{lo:4.1f}–{lo + 1:4.1f} | {bar} {n}")
    unscored = sum(1 for r in records if r.get("mean") is None)
    if unscored:
        lines.append(f"never scored: {unscored}")
    return lines


def render_card(run_dir: Path, run: dict, result: ExportResult, records: list[dict]) -> str:
    lines = [f"# Dataset card: {result.out.name}", "",
             f"Exported by gra-local from `{run_dir}` on "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}.", "",
             f"- format: `{result.format}`",
             f"- records: {result.exported}",
             f"- run status: {run.get('status', 'unknown')}", "", "## Models", "",
             "| name | sha256 | quantization |", "|---|---|---|"]
    models = run.get("models") or {}
    items = models.items() if isinstance(models, dict) else ((m.get("name"), m) for m in models)
    for name, ref in items:
        ref = ref or {}
        lines.append(f"| {name} | `{ref.get('sha256') or 'unknown'}` | {ref.get('quantization') or 'unknown'} |")
    lines += ["", "## Settings", ""]
    options = (run.get("config") or {}).get("options") or {}
    lines += [f"- {k}: `{orjson.dumps(v).decode()}`" for k, v in sorted(options.items())] or ["- (none recorded)"]
    counts = run.get("counts") or {}
    lines += ["", "## Counts", "", "| | count |", "|---|---|"]
    for key in ("attempts", "accepted", "rejected", "adjudicated"):
        if key in counts:
            lines.append(f"| {key} (run) | {counts[key]} |")
    for reason, n in sorted((counts.get("by_reason") or {}).items()):
        lines.append(f"| reason {reason} (run) | {n} |")
    lines += [f"| accepted (after overrides) | {result.accepted} |",
              f"| rejected (after overrides) | {result.rejected} |",
              f"| overrides applied | {result.overridden} |",
              f"| below --min-score | {result.filtered_by_score} |",
              f"| exported | {result.exported} |"]
    lines += ["", "## Score distribution (μ of exported records)", "", "```"]
    lines += _histogram_lines(records)
    lines += ["```", "", "## Filters", ""]
    lines += [f"- {k}: {v}" for k, v in result.filters.items()]
    return "\n".join(lines) + "\n"


# --- the export ----------------------------------------------------------------------


def export_run(run_dir: Path, fmt: Format, out: Path, include_rejected: bool = False,
               min_score: float | None = None) -> ExportResult:
    run_dir, out = Path(run_dir), Path(out)
    if fmt not in CONVERTERS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if min_score is not None and not (0.0 <= float(min_score) <= 10.0):
        raise ConfigError(f"--min-score {min_score}: must be between 0 and 10")
    run = _load_run_json(run_dir)
    if not out.parent.is_dir():
        raise OutputError(f"{out}: folder {out.parent} does not exist")
    if out.resolve().parent == run_dir.resolve() and out.name in (ACCEPTED, REJECTED, RUN_JSON):
        raise OutputError(f"{out}: would overwrite the run's own {out.name}; choose another --out")

    # Both files are read: an override may move a rejected record into the accepted set.
    records = _read_records([run_dir / ACCEPTED, run_dir / REJECTED])
    overrides = load_overrides(run_dir)
    overridden = 0
    accepted: list[dict] = []
    rejected: list[dict] = []
    for rec in records:
        decision = effective_decision(rec, overrides)
        if decision != rec.get("decision"):
            overridden += 1
            rec = {**rec, "decision": decision, "override": overrides[str(rec["id"])]}
        (accepted if decision == "accepted" else rejected).append(rec)

    chosen = accepted + (rejected if include_rejected else [])
    below = 0
    if min_score is not None:
        kept = [r for r in chosen if r.get("mean") is not None and float(r["mean"]) >= min_score]
        below = len(chosen) - len(kept)
        chosen = kept
    if not chosen:
        if not accepted and not include_rejected:
            raise OutputError(f"{run_dir}: nothing to export: 0 accepted records ({len(rejected)} "
                              "rejected; pass --include-rejected to export those)")
        raise OutputError(f"{run_dir}: nothing to export: {len(chosen) + below} records selected, "
                          f"{below} below --min-score {min_score}")

    filters = {"include_rejected": include_rejected,
               "min_score": "none" if min_score is None else min_score,
               "overrides": f"{len(overrides)} in overrides.jsonl, {overridden} changed a decision"}
    result = ExportResult(out=out, card=card_path(out), format=fmt, exported=len(chosen),
                          accepted=len(accepted), rejected=len(rejected), filtered_by_score=below,
                          overridden=overridden, filters=filters)
    convert = CONVERTERS[fmt]
    try:
        _write_atomic([(out, (orjson.dumps(convert(r)) + b"\n" for r in chosen)),
                       (result.card, [render_card(run_dir, run, result, chosen).encode("utf-8")])])
    except OSError as exc:
        raise OutputError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return result
