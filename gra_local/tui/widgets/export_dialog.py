"""A small modal for exporting the open run: format, output file, include rejected, and
the contested split."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select

FORMATS = ("alpaca", "sharegpt", "messages", "jsonl", "preference")
NOTES = {
    "preference": "chosen/rejected pairs per keyword triple; the adjudicated samples go "
                  "to <stem>.contested.jsonl",
}
DEFAULT_NOTE = "a dataset card is written next to it"


class ExportChoice(NamedTuple):
    fmt: str
    path: Path
    include_rejected: bool
    contested: bool = False


class ExportDialog(ModalScreen[ExportChoice | None]):
    """Dismisses with an ExportChoice, or None when cancelled. Preference pairs take their
    rejected side from the rejected records and always write the contested split, so
    both boxes are fixed for that format."""

    DEFAULT_CSS = """
    ExportDialog { align: center middle; }
    ExportDialog > Vertical { width: 64; height: auto; border: thick $primary;
                              background: $surface; padding: 1 2; }
    ExportDialog Horizontal { height: auto; align-horizontal: right; }
    ExportDialog Button { margin-left: 1; }
    ExportDialog #export-note { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export.cancel")]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Export {self.run_dir.name} (a dataset card is written next to it)")
            yield Select([(f, f) for f in FORMATS], value="alpaca", allow_blank=False, id="export-format")
            yield Input(str(self.run_dir / "export.alpaca.jsonl"), id="export-path")
            yield Label(DEFAULT_NOTE, id="export-note")
            yield Checkbox("include rejected records", id="export-rejected")
            yield Checkbox("also write the adjudicated samples to <stem>.contested",
                           id="export-contested")
            with Horizontal():
                yield Button("Cancel", id="export-cancel")
                yield Button("Export", variant="primary", id="export-save")

    @on(Select.Changed, "#export-format")
    def _format_changed(self, event: Select.Changed) -> None:
        fmt = str(event.value)
        self.query_one("#export-path", Input).value = str(self.run_dir / f"export.{fmt}.jsonl")
        self.query_one("#export-note", Label).update(NOTES.get(fmt, DEFAULT_NOTE))
        rejected = self.query_one("#export-rejected", Checkbox)
        contested = self.query_one("#export-contested", Checkbox)
        rejected.disabled = contested.disabled = fmt == "preference"
        contested.value = fmt == "preference"  # always written with pairs; opt-in otherwise
        if rejected.disabled:
            rejected.value = False

    @on(Button.Pressed, "#export-save")
    @on(Input.Submitted, "#export-path")
    def save(self) -> None:
        fmt = str(self.query_one("#export-format", Select).value)
        path = Path(self.query_one("#export-path", Input).value.strip()).expanduser()
        include = self.query_one("#export-rejected", Checkbox).value and fmt != "preference"
        contested = self.query_one("#export-contested", Checkbox).value or fmt == "preference"
        self.dismiss(ExportChoice(fmt, path, include, contested))

    @on(Button.Pressed, "#export-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
