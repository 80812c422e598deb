"""A modal with a run's quality figures from run.json: reviewer calibration (canary
accuracy, parse failures, mean scores, agreement, flags), panel α/κ, dedup and rounds."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from gra_local.runs.formatting import num, pct

COLUMNS = ("reviewer", "canary acc.", "canaries", "parse fail", "mean score", "good/bad canary",
           "agreement", "flag")


def reviewer_rows(run: dict[str, Any]) -> list[tuple[str, ...]]:
    cal = run.get("calibration") or {}
    rows = []
    for name, r in sorted((cal.get("reviewers") or {}).items()):
        rows.append((name, pct(r.get("accuracy")), str(r.get("canaries", 0)),
                     pct(r.get("parse_failure_rate")), num(r.get("mean_score"), 1),
                     f"{num(r.get('mean_canary_good_score'), 1)}/{num(r.get('mean_canary_bad_score'), 1)}",
                     pct(r.get("agreement_with_panel")),
                     f"FLAGGED: {r.get('flag_reason')}" if r.get("flagged") else ""))
    return rows


def summary_lines(run: dict[str, Any]) -> list[str]:
    lines = []
    cal = run.get("calibration") or {}
    panel = cal.get("panel") or {}
    if cal:
        canaries = (f"{cal.get('canaries_judged', 0)} canaries judged (on them: α "
                    f"{num(panel.get('canary_krippendorff_alpha_scores'))}, κ "
                    f"{num(panel.get('canary_fleiss_kappa_instruction'))}), action "
                    f"{cal.get('action')}" if cal.get("canaries_per_batch") else "no canaries")
        lines.append(f"Panel agreement: Krippendorff's α {num(panel.get('krippendorff_alpha_scores'))}"
                     f" (scores), Fleiss' κ {num(panel.get('fleiss_kappa_instruction'))} "
                     f"(instruction checks), {panel.get('items', 0)} items; {canaries}")
    dedup = run.get("dedup") or {}
    dups = ((run.get("counts") or {}).get("by_reason") or {}).get("duplicate", 0)
    if dedup.get("enabled"):
        lines.append(f"Dedup: {dedup.get('embedder')} at cosine {dedup.get('threshold')}, "
                     f"{dups} duplicates dropped")
    elif dedup:
        lines.append("Dedup: off")
    for number, r in sorted((run.get("rounds") or {}).items(), key=lambda kv: int(kv[0])):
        lines.append(f"Round {number}: {r.get('attempts', 0)} attempts, {r.get('accepted', 0)} "
                     f"accepted, {r.get('rejected', 0)} rejected, {r.get('pool_added', 0)} "
                     "added to the next round's pool")
    return lines or ["This run.json holds no quality figures (made before they existed)."]


class QualityReport(ModalScreen[None]):
    DEFAULT_CSS = """
    QualityReport { align: center middle; }
    QualityReport > Vertical { width: 96%; max-width: 140; height: auto; max-height: 90%;
                               border: thick $accent; background: $surface; padding: 1 2; }
    QualityReport DataTable { height: auto; max-height: 16; margin: 1 0; }
    QualityReport .hint { color: $text-muted; }
    """
    BINDINGS = [Binding("escape,q", "close", "Close", id="quality.close")]

    def __init__(self, title: str, run: dict[str, Any]) -> None:
        super().__init__()
        self.title_text = title
        self.run = run

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, markup=False)
            yield Static("\n".join(summary_lines(self.run)), markup=False, id="summary")
            table: DataTable[str] = DataTable(id="reviewers", cursor_type="row")
            table.add_columns(*COLUMNS)
            table.add_rows(reviewer_rows(self.run))
            yield table
            yield Label("Canary accuracy: known-good pairs passed with μ ≥ τ, corrupted ones "
                        "failed or scored < τ. Escape closes.", classes="hint", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
