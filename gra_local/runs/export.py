"""`gra-local export`: a run's decided records as a training file, plus a dataset card.

Formats: alpaca (instruction/input/output), sharegpt (conversations human/gpt), messages
(user/assistant roles), jsonl (the full records as written by the run), and preference
(chosen/rejected pairs per keyword triple, see export_preference). Decision overrides
from the results screen (overrides.jsonl) replace a record's decision. Unverified records
(unverified.jsonl: no evidence could judge them) are never exported, neither as data nor
with --include-rejected nor on either side of a preference pair, unless a person
overrode one to accepted or rejected, which decides it like any other record. The contested
split (adjudicated samples) goes to `<stem>.contested<suffix>` next to the output:
always for preference, with `contested=True` for the other formats. The output files
and the card are written atomically: a failed export leaves neither half written nor a
temp file behind.
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
from gra_local.core.rundir.files import fsync_dir
from gra_local.core.rundir.journal import (
    ACCEPTED,
    LOCK,
    REJECTED,
    RUN_FILES,
    RUN_JSON,
    UNVERIFIED,
    read_jsonl,
)
from gra_local.core.rundir.report import OtherSchema, RunReport, read_report
from gra_local.runs.browse import effective_decision, load_overrides, mean_histogram
from gra_local.runs.preference import (
    NoPreferencePairs,
    PairingStats,
    build_pairs,
    contested_row,
    no_pairs_message,
    preference_card_lines,
)
from gra_local.runs.preference import contested as contested_records

Format = Literal["alpaca", "sharegpt", "messages", "jsonl", "preference"]
FORMATS: tuple[str, ...] = ("alpaca", "sharegpt", "messages", "jsonl", "preference")


@dataclass
class ExportResult:
    out: Path
    card: Path
    format: str
    exported: int
    accepted: int  # effective accepted records read (after overrides)
    rejected: int  # effective rejected records read (after overrides)
    unverified: int = 0  # effective unverified records read (after overrides): never exported
    filtered_by_score: int = 0
    overridden: int = 0
    filters: dict[str, Any] = field(default_factory=dict)
    contested: Path | None = None  # the contested split's file, when written
    contested_count: int = 0
    pairing: PairingStats | None = None  # --format preference only


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
"""Record → line, per record format; preference lines are built from pairs instead, and its
contested file holds `contested_row`s."""


# --- reading -------------------------------------------------------------------------


def _load_run_json(run_dir: Path) -> RunReport:
    if not run_dir.is_dir():
        raise OutputError(f"{run_dir}: no such directory")
    try:
        report = read_report(run_dir / RUN_JSON)
    except OtherSchema as exc:
        raise OutputError(f"{exc}. Export it with the version that wrote it, or run it again "
                          "with this one") from None
    if report is None:
        raise OutputError(f"{run_dir}: not a gra-local run (no {RUN_JSON})")
    return report


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
        for folder in {path.parent for _, path in temps}:
            fsync_dir(folder)  # the renames survive a power cut
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)


def card_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.card.md")


def _refuse_run_files(run_dir: Path, out: Path) -> None:
    """An export never writes over a file of the run it reads (records, journal, pool,
    canaries, overrides, run.json, logs, the lock), neither with the data file nor with the
    card or contested split written next to it."""
    if out.resolve().parent != run_dir.resolve():
        return
    own = {*RUN_FILES, LOCK}
    for path in (out, card_path(out), contested_path(out)):
        if path.name in own:
            raise OutputError(f"{path}: would overwrite the run's own {path.name}; choose "
                              "another --out")


def contested_path(out: Path) -> Path:
    """`<stem>.contested<suffix>` next to `out` (`.jsonl` when `out` has no suffix)."""
    return out.with_name(f"{out.stem}.contested{out.suffix or '.jsonl'}")


def _jsonl(rows: Iterable[dict]) -> Iterable[bytes]:
    return (orjson.dumps(row) + b"\n" for row in rows)


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


def render_card(run_dir: Path, run: RunReport, result: ExportResult, records: list[dict],
                rejected_side: list[dict] | None = None) -> str:
    """The card; `records` are the exported records (preference: the chosen ones) and
    `rejected_side` the preference pairs' rejected records."""
    what = "pairs" if result.pairing is not None else "records"
    lines = [f"# Dataset card: {result.out.name}", "",
             f"Exported by gra-local from `{run_dir}` on "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}.", "",
             f"- format: `{result.format}`",
             f"- {what}: {result.exported}",
             f"- run status: {run.status}", "", "## Models", "",
             "| name | sha256 | quantization |", "|---|---|---|"]
    for name, ref in run.models.items():
        if ref.endpoint is not None:  # no file: the server that served it, and its model id
            server = " ".join(x for x in (ref.server, ref.server_version) if x) or "server"
            lines.append(f"| {name} | served by `{ref.endpoint}` ({server}), model "
                         f"`{ref.served_model or 'unknown'}` | n/a |")
            continue
        lines.append(f"| {name} | `{ref.sha256 or 'unknown'}` | {ref.quantization or 'unknown'} |")
    lines += ["", "## Settings", ""]
    options = run.config.options if run.config is not None else {}
    lines += [f"- {k}: `{orjson.dumps(v).decode()}`" for k, v in sorted(options.items())] or ["- (none recorded)"]
    counts = run.counts
    lines += ["", "## Counts", "", "| | count |", "|---|---|"]
    for key, n in (("attempts", counts.attempts), ("accepted", counts.accepted),
                   ("rejected", counts.rejected), ("unverified", counts.unverified),
                   ("adjudicated", counts.adjudicated)):
        if key in counts.model_fields_set:  # a count the run did not record is not a 0
            lines.append(f"| {key} (run) | {n} |")
    for reason, n in sorted(counts.by_reason.items()):
        lines.append(f"| reason {reason} (run) | {n} |")
    lines += [f"| accepted (after overrides) | {result.accepted} |",
              f"| rejected (after overrides) | {result.rejected} |",
              f"| unverified (after overrides, never exported) | {result.unverified} |",
              f"| overrides applied | {result.overridden} |"]
    if result.pairing is None:
        lines.append(f"| below --min-score | {result.filtered_by_score} |")
    lines += [f"| exported | {result.exported} |"]
    if result.pairing is not None:
        lines += ["", *preference_card_lines(result.pairing)]
        lines += ["", "## Score distribution (μ of chosen responses)", "", "```",
                  *_histogram_lines(records), "```", "",
                  "## Score distribution (μ of rejected responses)", "", "```",
                  *_histogram_lines(rejected_side or []), "```"]
    else:
        lines += ["", "## Score distribution (μ of exported records)", "", "```",
                  *_histogram_lines(records), "```"]
    lines += ["", "## Contested split", ""]
    if result.contested is None:
        lines.append("Not written (`--contested` writes the adjudicated samples to "
                     "`<stem>.contested<suffix>`).")
    else:
        shape = ("one object per sample: id, instruction, response, domain, keywords, decision, "
                 "reason, reviewer_scores, mean, std, adjudicator, adjudicator_score, override"
                 if result.pairing is not None else f"format `{result.format}`")
        lines.append(f"`{result.contested.name}`: {result.contested_count} adjudicated "
                     f"sample(s) (reasons adjudicated_accept and adjudicated_reject: the panel's "
                     f"σ exceeded δ and the adjudicator decided), accepted and rejected alike, "
                     f"whatever --include-rejected and --min-score say; {shape}.")
    lines += ["", "## Filters", ""]
    lines += [f"- {k}: {v}" for k, v in result.filters.items()]
    return "\n".join(lines) + "\n"


# --- the export ----------------------------------------------------------------------


def _order(record: dict) -> tuple[int, int, str]:
    def num(x: Any) -> int:
        return x if isinstance(x, int) else 0
    return num(record.get("round")), num(record.get("attempt")), str(record.get("id"))


@dataclass
class _Decided:
    """The records read, each under its effective decision; an overridden record carries
    its override under `override`."""

    accepted: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    unverified: list[dict] = field(default_factory=list)
    """Still unverified after overrides (or of a decision this version does not know):
    never exported."""
    overridden: int = 0


def _decide(records: list[dict], overrides: dict[str, dict]) -> _Decided:
    out = _Decided()
    for rec in records:
        decision = effective_decision(rec, overrides)
        if decision != rec.get("decision"):
            out.overridden += 1
            rec = {**rec, "decision": decision, "override": overrides[str(rec["id"])]}
        {"accepted": out.accepted, "rejected": out.rejected}.get(decision, out.unverified).append(rec)
    return out


def _write(out: Path, files: list[tuple[Path, Iterable[bytes]]]) -> None:
    try:
        _write_atomic(files)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write ({exc.strerror or exc})") from None


def export_run(run_dir: Path, fmt: Format, out: Path, include_rejected: bool = False,
               min_score: float | None = None, contested: bool = False) -> ExportResult:
    """Write `out`, its card and (for preference, or with `contested`) the contested split.
    Raises ConfigError for bad options, OutputError (NoPreferencePairs for a preference
    export without pairs) when there is nothing to write or it cannot be written."""
    run_dir, out = Path(run_dir), Path(out)
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "preference" and include_rejected:
        raise ConfigError("--include-rejected does not apply to --format preference: its "
                          "rejected side is made of rejected records already")
    if min_score is not None and not (0.0 <= float(min_score) <= 10.0):
        raise ConfigError(f"--min-score {min_score}: must be between 0 and 10")
    run = _load_run_json(run_dir)
    if not out.parent.is_dir():
        raise OutputError(f"{out}: folder {out.parent} does not exist")
    _refuse_run_files(run_dir, out)

    # Every record file is read: an override may move a rejected or unverified record into
    # the accepted set (and an unverified one into the rejected set).
    records = _read_records([run_dir / ACCEPTED, run_dir / REJECTED, run_dir / UNVERIFIED])
    overrides = load_overrides(run_dir)
    decided = _decide(records, overrides)
    accepted, rejected = decided.accepted, decided.rejected
    filters: dict[str, Any] = {
        "include_rejected": include_rejected,
        "min_score": "none" if min_score is None else
        (f"{min_score} (chosen side)" if fmt == "preference" else min_score),
        "overrides": f"{len(overrides)} in overrides.jsonl, {decided.overridden} changed a decision",
        "unverified": f"{len(decided.unverified)} left out (no evidence judged them; an override "
        "to accepted exports one)"}
    result = ExportResult(out=out, card=card_path(out), format=fmt, exported=0,
                          accepted=len(accepted), rejected=len(rejected),
                          unverified=len(decided.unverified), overridden=decided.overridden,
                          filters=filters)
    split: list[dict] = []
    if contested or fmt == "preference":
        split = sorted(contested_records(accepted + rejected), key=_order)
        result.contested, result.contested_count = contested_path(out), len(split)
    if fmt == "preference":
        return _export_pairs(run_dir, run, result, min_score, sorted(accepted, key=_order),
                             sorted(rejected, key=_order), split)

    chosen = accepted + (rejected if include_rejected else [])
    below = 0
    if min_score is not None:
        kept = [r for r in chosen if r.get("mean") is not None and float(r["mean"]) >= min_score]
        below = len(chosen) - len(kept)
        chosen = kept
    if not chosen:
        if not accepted and not include_rejected:
            unverified = (f", {result.unverified} unverified, never exported"
                          if result.unverified else "")
            raise OutputError(f"{run_dir}: nothing to export: 0 accepted records ({len(rejected)} "
                              f"rejected{unverified}; pass --include-rejected to export the "
                              "rejected ones)")
        raise OutputError(f"{run_dir}: nothing to export: {len(chosen) + below} records selected, "
                          f"{below} below --min-score {min_score}")
    result.exported, result.filtered_by_score = len(chosen), below
    convert = CONVERTERS[fmt]
    files: list[tuple[Path, Iterable[bytes]]] = [(out, _jsonl(convert(r) for r in chosen))]
    if result.contested is not None:
        files.append((result.contested, _jsonl(convert(r) for r in split)))
    files.append((result.card, [render_card(run_dir, run, result, chosen).encode("utf-8")]))
    _write(out, files)
    return result


def _export_pairs(run_dir: Path, run: RunReport, result: ExportResult, min_score: float | None,
                  accepted: list[dict], rejected: list[dict], split: list[dict]) -> ExportResult:
    """The preference export: pairs, the contested split (always) and the card."""
    assert result.contested is not None  # export_run always sets it for preference
    prefs = build_pairs(accepted, rejected, min_score)
    if not prefs.pairs:
        raise NoPreferencePairs(no_pairs_message(str(run_dir), prefs.stats, min_score))
    result.pairing, result.exported = prefs.stats, len(prefs.pairs)
    result.filtered_by_score = prefs.stats.chosen_below_min_score
    by_id = {str(r["id"]): r for r in rejected}
    rejected_side = [by_id[p.rejected_id] for p in prefs.pairs]
    card = render_card(run_dir, run, result, prefs.chosen_records, rejected_side)
    _write(result.out, [(result.out, _jsonl(p.model_dump(mode="json") for p in prefs.pairs)),
                        (result.contested, _jsonl(contested_row(r) for r in split)),
                        (result.card, [card.encode("utf-8")])])
    return result
