"""The detail pane of one record: sample, annotation, each review, μ/σ, adjudication."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widgets import Static

from gra_local.core.records import SCORE_FIELDS, VERDICT_FIELDS
from gra_local.runs.formatting import MISSING, num

SHORT = {"correctness": "cor", "clarity": "cla", "completeness": "cmp", "relevance": "rel",
         "coherence": "coh", "ethics": "eth"}


def escape(text: str) -> str:
    """Literal text inside Textual markup: every `[` escaped (textual.markup.escape misses
    a lone trailing one)."""
    return text.replace("[", "\\[")


def _scores_line(scores: dict | None) -> str:
    if not scores:
        return f"  scores: {MISSING}"
    parts = " ".join(f"{SHORT[f]} {scores.get(f, '?')}" for f in SCORE_FIELDS)
    return f"  {parts}"


def render_record(record: dict, override: dict | None = None) -> str:
    """Rich markup for one record (every value escaped)."""
    e = escape
    lines = [f"[b]{e(str(record.get('id')))}[/b]  {e(str(record.get('decision')))} "
             f"({e(str(record.get('reason')))})"]
    if override:
        note = f": {override.get('note')}" if override.get("note") else ""
        lines.append(f"[b $warning]override → {e(str(override.get('label')))}{e(note)}[/]")
    if record.get("reason_detail"):
        lines.append(f"[dim]{e(str(record['reason_detail']))}[/dim]")
    margin = f"  margin {num(record['margin'])}" if record.get("margin") is not None else ""
    lines.append(f"μ {num(record.get('mean'))}  σ {num(record.get('std'))}{margin}  "
                 f"domain {e(str(record.get('domain')))}  generator {e(str(record.get('generator')))}")
    lines += ["", "[b]Instruction[/b]", e(str(record.get("instruction") or "")),
              "", "[b]Response[/b]", e(str(record.get("response") or "")),
              "", f"[b]Keywords[/b] {e(', '.join(map(str, record.get('keywords') or [])))}",
              f"[b]Summary[/b] {e(str(record.get('summary') or ''))}", "", "[b]Reviews[/b]"]
    reviews = record.get("reviews") or []
    if not reviews:
        lines.append("  (none)")
    for rev in reviews:
        verdict = rev.get("verdict")
        vtext = (" ".join(f"{f} {verdict.get(f)}" for f in VERDICT_FIELDS) if verdict else "no verdict")
        fails = f"  failures {rev.get('failures')}" if rev.get("failures") else ""
        lines.append(f"• [b]{e(str(rev.get('model')))}[/b]  score {num(rev.get('score'))}{fails}")
        lines.append(f"  {e(vtext)}")
        lines.append(e(_scores_line(rev.get("scores"))))
        feedback = (rev.get("scores") or {}).get("feedback")
        if feedback:
            lines.append(f"  [i]{e(str(feedback))}[/i]")
    adj = record.get("adjudication")
    lines += ["", "[b]Adjudication[/b]"]
    if adj:
        kept = "kept" if adj.get("kept") else "dropped"
        lines.append(f"• [b]{e(str(adj.get('model')))}[/b]  score {num(adj.get('score'))}  {kept}")
        lines.append(e(_scores_line(adj.get("scores"))))
        feedback = (adj.get("scores") or {}).get("feedback")
        if feedback:
            lines.append(f"  [i]{e(str(feedback))}[/i]")
    else:
        lines.append("  (not adjudicated)")
    return "\n".join(lines)


class RecordView(VerticalScroll):
    """Scrollable detail of the highlighted record."""

    DEFAULT_CSS = """
    RecordView { height: 1fr; padding: 0 1; }
    RecordView > Static { width: 1fr; }
    """

    def compose(self):
        yield Static("Select a record to see its reviews.", id="record-detail")

    def show(self, record: dict | None, override: dict | None = None) -> None:
        body = self.query_one("#record-detail", Static)
        if record is None:
            body.update("No record selected.")
        else:
            body.update(render_record(record, override))
        self.scroll_home(animate=False)
