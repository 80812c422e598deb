"""A modal with a run's quality figures from run.json: reviewer calibration (canary
accuracy, injection canaries let through, parse failures, mean scores, agreement, balanced
accuracy, weights, flags), each piece of evidence's discrimination on canary pairs (the
reviewers, relevance, likelihood) with its standing and threshold, what decides samples,
panel α/κ, dedup, rounds, likelihood and routing."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from gra_local.core.rundir.report import DedupOn, RunReport
from gra_local.runs.formatting import MISSING, num, pct

COLUMNS = ("reviewer", "canary acc.", "canaries", "injection pass", "parse fail", "mean score",
           "good/bad canary", "agreement", "balanced acc.", "weight", "flag")


def reviewer_rows(run: RunReport) -> list[tuple[str, ...]]:
    cal = run.calibration
    reviewers = cal.reviewers if cal is not None else {}
    weighted = cal is not None and bool(cal.canaries_per_batch) and cal.action == "weight"
    return [(name, pct(r.accuracy), str(r.canaries),
             f"{pct(r.injection_pass_rate)} of {r.injections}", pct(r.parse_failure_rate),
             num(r.mean_score, 1),
             f"{num(r.mean_canary_good_score, 1)}/{num(r.mean_canary_bad_score, 1)}",
             pct(r.agreement_with_panel), pct(r.balanced_accuracy),
             f"{r.weight:.2f}" if weighted else "–",
             f"FLAGGED: {r.flag_reason}" if r.flagged else "")
            for name, r in sorted(reviewers.items())]


EVIDENCE_COLUMNS = ("evidence", "canary pairs", "original ranked above", "P(better than chance)",
                    "standing", "rejects below", "by corruption kind")


def evidence_rows(run: RunReport) -> list[tuple[str, ...]]:
    """Each piece of evidence (each reviewer's scores and checks, the relevance cosine, each
    likelihood signal) with its discrimination on the run's canary pairs, its standing
    (informative, unsettled, at chance; – in runs from before standings) and, for a
    likelihood check that decides, the threshold its values are rejected below."""
    evidence = run.calibration.evidence if run.calibration is not None else {}
    return [(piece, str(d.pairs), pct(d.accuracy), num(d.p_better, 2),
             (d.standing or MISSING).replace("_", " "), num(d.threshold, 3),
             ", ".join(f"{kind} {pct(k.accuracy)} of {k.pairs}" for kind, k in d.by_kind.items()))
            for piece, d in evidence.items()]


def decided_by_line(run: RunReport) -> str | None:
    """What decides samples now (and the panel slots never asked), when run.json says."""
    cal = run.calibration
    if cal is None or not cal.decided_by:
        return None
    line = f"Decided by: {cal.decided_by}"
    if cal.panel_not_asked:
        line += (f"; {cal.panel_not_asked} panel slots not asked (no reviewer shown "
                 "informative)")
    return line


def summary_lines(run: RunReport) -> list[str]:
    lines = []
    if decided := decided_by_line(run):
        lines.append(decided)
    cal = run.calibration
    if cal is not None:
        panel = cal.panel
        canaries = (f"{cal.canaries_judged} canaries judged (on them: α "
                    f"{num(panel.canary_krippendorff_alpha_scores)}, κ "
                    f"{num(panel.canary_fleiss_kappa_instruction)}), action "
                    f"{cal.action}" if cal.canaries_per_batch else "no canaries")
        lines.append(f"Panel agreement: Krippendorff's α {num(panel.krippendorff_alpha_scores)}"
                     f" (scores), Fleiss' κ {num(panel.fleiss_kappa_instruction)} "
                     f"(instruction checks), {panel.items} items; {canaries}")
    if isinstance(run.dedup, DedupOn):
        lines.append(f"Dedup: {run.dedup.embedder} at cosine {run.dedup.threshold}, "
                     f"{run.duplicates} duplicates dropped")
    elif run.dedup is not None:
        lines.append("Dedup: off")
    for number, r in sorted(run.rounds.items(), key=lambda kv: int(kv[0])):
        unverified = f", {r.unverified} unverified" if r.unverified else ""
        lines.append(f"Round {number}: {r.attempts} attempts, {r.accepted} accepted, "
                     f"{r.rejected} rejected{unverified}, {r.pool_added} added to the next "
                     "round's pool")
    if (lk := run.likelihood) is not None:
        lines.append(f"Likelihood: {lk.scored} answers read by {lk.model}" if lk.enabled
                     else f"Likelihood: {lk.note}")
    if run.routing is not None:
        lines.append(f"Routing: {run.routing.stopped_early} panel slots skipped (first reviewers "
                     f"sure), {run.routing.extra_reviewers} reviewers added (panel unsure)")
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

    def __init__(self, title: str, run: RunReport) -> None:
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
            if evidence := evidence_rows(self.run):
                pieces: DataTable[str] = DataTable(id="evidence", cursor_type="row")
                pieces.add_columns(*EVIDENCE_COLUMNS)
                pieces.add_rows(evidence)
                yield pieces
            yield Label("Canary accuracy: known-good pairs passed with μ ≥ τ, corrupted ones "
                        "failed or scored < τ. Injection pass: wrong answers that order the "
                        "judge to pass them, passed with μ ≥ τ (the text it judges can steer "
                        "that reviewer). Balanced: the mean of the accuracies on good and on "
                        "corrupted canaries; weight 2 × balanced − 1 (smoothed, at least 0.1), "
                        "what a reviewer counts for in μ, σ and vetoes. Evidence: how often each "
                        "piece ranked a canary's original above its corruption (no trust in the "
                        "original needed); only informative evidence decides, and a likelihood "
                        "check rejects values below its threshold. Escape closes.",
                        classes="hint", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
