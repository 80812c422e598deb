"""What an output directory already holds: the decided records, the in-flight journal,
the identity of the run that made them. Resume starts from here."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gra_local.core.candidate import Candidate
from gra_local.core.config import ModelSpec
from gra_local.core.errors import OutputError
from gra_local.core.rundir import files
from gra_local.core.rundir import journal as j
from gra_local.core.rundir.report import (
    READABLE_SCHEMAS,
    NotARunReport,
    OtherSchema,
    RunIdentity,
    RunReport,
    read_report,
)
from gra_local.core.stats import Counts, RunStats

_V1_OPTIONS = {"dedup_threshold": None, "minhash": None, "canaries": 0, "calibration": None,
               "min_canary_accuracy": None}
"""What a schema-1 run did, in schema-2 option names: no dedup, no canaries."""


@dataclass
class RunDirState:
    previous: RunReport | None
    """The run.json found; None when there is none or it is of another schema."""
    other_schema: OtherSchema | None = None
    """Set when run.json is of a schema this version does not read: refused, unless the
    run left nothing else (discard_empty_run)."""
    decided: set[str] = field(default_factory=set)
    accepted: list[dict] = field(default_factory=list)
    attempts: Counter[int] = field(default_factory=Counter)  # highest attempt per round
    inflight: list[Candidate] = field(default_factory=list)

    @property
    def has_run_json(self) -> bool:
        return self.previous is not None or self.other_schema is not None

    def accepted_in(self, round_no: int) -> int:
        return sum(1 for r in self.accepted if r.get("round") == round_no)


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} → {b!r}")
    return out


def check_identity(out_dir: Path, state: RunDirState, identity: RunIdentity) -> None:
    """Refuse to resume a run directory of another schema or made with other settings."""
    has_outputs = any((out_dir / n).exists() for n in (j.ACCEPTED, j.REJECTED, j.UNVERIFIED, j.JOURNAL))
    if state.other_schema is not None:
        raise OutputError(f"{out_dir} was written by another version of gra-local (schema "
                          f"{state.other_schema.version!r}; this one reads "
                          f"{', '.join(map(str, READABLE_SCHEMAS))}); use --restart to move it aside")
    previous = state.previous
    if previous is None:
        if has_outputs:
            raise OutputError(f"{out_dir} holds output files but no run.json; it is not a run "
                              "this tool can resume. Use --restart to move them aside")
        return
    version = previous.schema_version
    was = previous.identity.mode if previous.identity is not None else None
    if was is not None and identity.mode is not None and was != identity.mode:
        raise OutputError(f"{out_dir} holds a `gra-local {was}` run, which `gra-local "
                          f"{identity.mode}` cannot continue: pick another --out, or add "
                          "--restart to move the old run aside and start over")
    # Compared as mappings, key by key, so that the refusal names every setting that differs.
    old = ({} if previous.identity is None
           else migrate_identity(previous.identity, version).model_dump(mode="json"))
    new = identity.model_dump(mode="json")
    if old.get("mode") is None:  # written before the mode was recorded: not compared
        old["mode"] = new["mode"]
    _fill_new_model_keys(old, new)
    _fill_new_options(old, new)
    diffs = _diff(old, new)
    if diffs:
        shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        hint = (" (it was made before dedup existed: add --no-dedup to resume it)"
                if version == 1 else "")
        raise OutputError(f"{out_dir} holds a run with other settings ({shown}){hint}. Rerun "
                          "with the same settings to resume, pick another --out, or add "
                          "--restart to move the old run aside and start over")


def migrate_identity(identity: RunIdentity, version: int | None) -> RunIdentity:
    """A run's identity in today's terms: schema 1 gets the options it implicitly ran with."""
    if version != 1:
        return identity
    return identity.model_copy(update={"options": {**_V1_OPTIONS, **identity.options}})


def _fill_new_model_keys(old: dict, new: dict) -> None:
    """Models-file keys added since `old` was written (e.g. n_parallel) take their defaults
    there, so that a run made before them resumes when the key is left at its default."""
    defaults = ModelSpec(name="defaults", path="-").model_dump(mode="json")
    for name, entry in old.get("models", {}).items():
        for key in new.get("models", {}).get(name, {}):
            if key not in entry and key in defaults:
                entry[key] = defaults[key]


def _fill_new_options(old: dict, new: dict) -> None:
    """Run options added since `old` was written (e.g. relevance) are not compared: a run
    made before them resumes, and goes on with what this run asks for."""
    if isinstance(old.get("options"), dict):
        for key, value in new.get("options", {}).items():
            old["options"].setdefault(key, value)


def read_previous(out_dir: Path) -> tuple[RunReport | None, OtherSchema | None]:
    """The run directory's run.json, or why it is of another schema."""
    try:
        return read_report(out_dir / j.RUN_JSON), None
    except OtherSchema as exc:
        return None, exc
    except NotARunReport as exc:
        raise OutputError(f"{exc}; use --restart to move it aside") from None


def nothing_done(state: RunDirState) -> bool:
    return not state.decided and not state.inflight


def discard_empty_run(out_dir: Path) -> None:
    """Forget a run that decided nothing and has nothing in flight (say, one whose seed
    file turned out bad): its run.json and pool hold no data worth a refusal."""
    for name in (j.RUN_JSON, j.POOL, j.JOURNAL, j.ACCEPTED, j.REJECTED, j.UNVERIFIED, j.CANARIES):
        (out_dir / name).unlink(missing_ok=True)
    files.fsync_dir(out_dir)


def load_state(out_dir: Path) -> RunDirState:
    previous, other_schema = read_previous(out_dir)
    state = RunDirState(previous=previous, other_schema=other_schema)
    for name in (j.ACCEPTED, j.REJECTED, j.UNVERIFIED):
        for rec in j.read_jsonl(out_dir / name):
            state.decided.add(rec["id"])
            state.attempts[rec["round"]] = max(state.attempts[rec["round"]], rec["attempt"])
            if name == j.ACCEPTED:
                state.accepted.append(rec)
    for row in j.read_jsonl(out_dir / j.CANARIES):  # judged canaries are done too
        state.decided.add(row["id"])
    latest: dict[str, dict] = {}
    for snap in j.read_jsonl(out_dir / j.JOURNAL):
        latest[snap["id"]] = snap
    for cid, snap in latest.items():
        state.attempts[snap["round"]] = max(state.attempts[snap["round"]], snap["attempt"])
        if cid in state.decided:
            continue
        try:
            state.inflight.append(Candidate.model_validate(snap))
        except ValidationError:
            raise OutputError(f"{out_dir / j.JOURNAL}: candidate {cid} is unreadable; use "
                              "--restart to start over") from None
    state.inflight.sort(key=lambda c: (c.round, c.attempt))
    return state


def recount(out_dir: Path, stats: RunStats, state: RunDirState) -> None:
    """Decision counts come from the output files themselves, so they are exact after a kill."""
    stats.counts = Counts()
    stats.rounds = {}
    for name in (j.ACCEPTED, j.REJECTED, j.UNVERIFIED):
        for rec in j.read_jsonl(out_dir / name, repair=False):
            stats.record_decision(rec["round"], rec["decision"], rec["reason"],
                                  rec.get("adjudication") is not None)
    for round_no, attempts in state.attempts.items():
        stats.round(round_no).attempts = attempts
    stats.counts.attempts = sum(state.attempts.values())


def compact_journal(out_dir: Path, inflight: list[Candidate]) -> None:
    """Rewrite the journal with only undecided candidates (keeps it small across resumes)."""
    files.write_atomic(out_dir / j.JOURNAL, j.jsonl_bytes(c.model_dump(mode="json") for c in inflight))
