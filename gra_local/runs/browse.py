"""Browsing finished runs: find run dirs, load records, filter, score statistics, overrides.

Pure logic (no Textual): the results screen renders what this module computes. A run's
records are in accepted.jsonl, rejected.jsonl and unverified.jsonl (samples no evidence
could judge: kept, neither accepted nor rejected). Decision overrides are a separate,
append-only label file (`overrides.jsonl`); the record files are never modified.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gra_local.core.errors import OutputError
from gra_local.core.rundir.journal import (
    ACCEPTED,
    REJECTED,
    RUN_JSON,
    UNVERIFIED,
    JsonlAppender,
    read_jsonl,
)
from gra_local.core.rundir.report import read_report
from gra_local.core.stats import Counts

OVERRIDES = "overrides.jsonl"
LABELS = ("accepted", "rejected")
"""What a person may override a decision to."""
DECISIONS = ("accepted", "rejected", "unverified")
"""What a record's decision may be: the decision filter's choices."""
RECORD_FILES = (ACCEPTED, REJECTED, UNVERIFIED)
MAX_DEPTH = 3
ADJUDICATED_REASONS = ("adjudicated_accept", "adjudicated_reject", "adjudication_failed")


@dataclass
class RunInfo:
    """One run directory as listed by the results screen."""

    path: Path
    status: str = "unknown"
    counts: Counts = field(default_factory=Counts)
    models: list[str] = field(default_factory=list)
    created: str | None = None
    last_session: str | None = None
    error: str | None = None
    """Why run.json could not be read; the run is listed all the same."""

    @property
    def accepted(self) -> int:
        return self.counts.accepted

    @property
    def rejected(self) -> int:
        return self.counts.rejected

    @property
    def unverified(self) -> int:
        return self.counts.unverified


def run_info(path: Path) -> RunInfo:
    """A run directory's summary from its run.json, whatever schema wrote it (the records
    are read, and refused, when the run is opened or exported)."""
    info = RunInfo(path=path)
    try:
        report = read_report(path / RUN_JSON, any_schema=True)
    except OutputError as exc:
        info.error = str(exc)
        return info
    if report is None:
        return info
    info.status = report.status
    info.counts = report.counts
    info.models = sorted(report.models)
    if report.sessions:
        info.created = report.sessions[0].started
        info.last_session = report.sessions[-1].ended or report.sessions[-1].started
    return info


def find_runs(root: Path, max_depth: int = MAX_DEPTH) -> list[RunInfo]:
    """Directories under `root` (itself included, depth ≤ `max_depth`) holding run.json,
    newest last session first."""
    root = Path(root)
    found: list[Path] = []

    def walk(d: Path, depth: int) -> None:
        if (d / RUN_JSON).is_file():
            found.append(d)
        if depth >= max_depth:
            return
        try:
            children = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            if child.name == "logs":
                continue
            walk(child, depth + 1)

    if root.is_dir():
        walk(root, 0)
    runs = [run_info(p) for p in found]
    runs.sort(key=lambda r: (r.last_session or "", str(r.path)), reverse=True)
    return runs


def load_records(run_dir: Path) -> list[dict]:
    """Every decided record of a run, accepted, rejected and unverified, in (round, attempt)
    order. Read-only: a torn last line is skipped, never cut off; a missing file (a run
    made before unverified.jsonl existed, or one that kept none) holds no records."""
    run_dir = Path(run_dir)
    records: list[dict] = []
    for name in RECORD_FILES:
        records.extend(r for r in read_jsonl(run_dir / name, repair=False) if isinstance(r, dict))

    def order(r: dict) -> tuple[int, int, str]:
        def num(x: Any) -> int:
            return x if isinstance(x, int) else 0
        return num(r.get("round")), num(r.get("attempt")), str(r.get("id"))

    records.sort(key=order)
    return records


# --- overrides -----------------------------------------------------------------------


def load_overrides(run_dir: Path) -> dict[str, dict]:
    """id → the last override written for it."""
    out: dict[str, dict] = {}
    for entry in read_jsonl(Path(run_dir) / OVERRIDES, repair=False):
        if isinstance(entry, dict) and "id" in entry:
            out[str(entry["id"])] = entry
    return out


def write_override(run_dir: Path, record_id: str, label: str, note: str = "",
                   at: str | None = None) -> dict:
    """Append one override line; returns it. The record files are left untouched."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, not {label!r}")
    entry = {"id": record_id, "label": label, "note": note,
             "at": at or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    out = JsonlAppender(Path(run_dir) / OVERRIDES)  # fsynced; a symlink there is refused
    try:
        out.append(entry)
    finally:
        out.close()
    return entry


def effective_decision(record: dict, overrides: dict[str, dict]) -> str:
    ov = overrides.get(str(record.get("id")))
    return str(ov["label"]) if ov else str(record.get("decision"))


# --- filtering -----------------------------------------------------------------------


def is_adjudicated(record: dict) -> bool:
    return record.get("adjudication") is not None or record.get("reason") in ADJUDICATED_REASONS


def record_reviewers(record: dict) -> list[str]:
    names = [r.get("model") for r in record.get("reviews") or [] if r.get("model")]
    return list(dict.fromkeys(names + list(record.get("reviewers") or [])))


@dataclass
class RecordFilter:
    """All set fields must match; None means "any". `decision` honours overrides."""

    decision: str | None = None
    domain: str | None = None
    generator: str | None = None
    reviewer: str | None = None
    min_mean: float | None = None
    max_mean: float | None = None
    adjudicated: bool | None = None
    text: str = ""

    def matches(self, record: dict, overrides: dict[str, dict] | None = None) -> bool:
        if self.decision and effective_decision(record, overrides or {}) != self.decision:
            return False
        if self.domain and record.get("domain") != self.domain:
            return False
        if self.generator and record.get("generator") != self.generator:
            return False
        if self.reviewer and self.reviewer not in record_reviewers(record):
            return False
        mean = record.get("mean")
        if self.min_mean is not None and (mean is None or mean < self.min_mean):
            return False
        if self.max_mean is not None and (mean is None or mean > self.max_mean):
            return False
        if self.adjudicated is not None and is_adjudicated(record) != self.adjudicated:
            return False
        if self.text:
            needle = self.text.lower()
            hay = " ".join(str(record.get(k) or "") for k in ("id", "instruction", "response", "summary"))
            hay += " " + " ".join(map(str, record.get("keywords") or []))
            if needle not in hay.lower():
                return False
        return True

    def apply(self, records: list[dict], overrides: dict[str, dict] | None = None) -> list[dict]:
        return [r for r in records if self.matches(r, overrides)]


def facets(records: list[dict]) -> dict[str, list[str]]:
    """Distinct values for the filter bar's selects."""
    reviewers: set[str] = set()
    for r in records:
        reviewers.update(record_reviewers(r))
    return {
        "domain": sorted({str(r.get("domain")) for r in records if r.get("domain")}),
        "generator": sorted({str(r.get("generator")) for r in records if r.get("generator")}),
        "reviewer": sorted(reviewers),
    }


# --- statistics for plots ------------------------------------------------------------


def mean_histogram(records: list[dict], bins: int = 10, lo: float = 0.0,
                   hi: float = 10.0) -> tuple[list[float], list[int]]:
    """Bin left edges and counts of the records' μ (records never scored are skipped)."""
    width = (hi - lo) / bins
    counts = [0] * bins
    for r in records:
        m = r.get("mean")
        if m is None:
            continue
        i = min(bins - 1, max(0, int((float(m) - lo) / width)))
        counts[i] += 1
    return [lo + i * width for i in range(bins)], counts


def reviewer_scores(records: list[dict]) -> dict[str, list[float]]:
    """Reviewer model → every score (mean of six) it gave."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for rev in r.get("reviews") or []:
            if rev.get("score") is not None and rev.get("model"):
                out[rev["model"]].append(float(rev["score"]))
    return dict(sorted(out.items()))


@dataclass
class Acceptance:
    accepted: int = 0
    total: int = 0

    @property
    def rate(self) -> float:
        return self.accepted / self.total if self.total else 0.0


def acceptance_by(records: list[dict], key: str,
                  overrides: dict[str, dict] | None = None) -> dict[str, Acceptance]:
    """`key` value (e.g. generator, domain) → accepted / total, overrides honoured (an
    unverified record counts in the total: it was not accepted)."""
    totals: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    for r in records:
        k = str(r.get(key) or "?")
        totals[k] += 1
        if effective_decision(r, overrides or {}) == "accepted":
            accepted[k] += 1
    return {k: Acceptance(accepted[k], totals[k]) for k in sorted(totals)}
