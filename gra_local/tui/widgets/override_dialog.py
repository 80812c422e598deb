"""A small modal to override one record's decision: label and a note."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet


class OverrideDialog(ModalScreen[tuple[str, str] | None]):
    """Dismisses with (label, note), or None when cancelled."""

    DEFAULT_CSS = """
    OverrideDialog { align: center middle; }
    OverrideDialog > Vertical { width: 56; height: auto; border: thick $primary;
                                background: $surface; padding: 1 2; }
    OverrideDialog RadioSet { width: 1fr; layout: horizontal; }
    OverrideDialog Horizontal { height: auto; align-horizontal: right; }
    OverrideDialog Button { margin-left: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="override.cancel")]

    def __init__(self, record_id: str, current: str) -> None:
        super().__init__()
        self.record_id = record_id
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            rid = self.record_id.replace("[", "\\[")
            yield Label(f"Override the decision of [b]{rid}[/b] (now {self.current})")
            with RadioSet(id="override-label"):
                yield RadioButton("accepted", value=self.current != "accepted", id="ov-accepted")
                yield RadioButton("rejected", value=self.current == "accepted", id="ov-rejected")
            yield Input(placeholder="note (why)", id="override-note")
            with Horizontal():
                yield Button("Cancel", id="override-cancel")
                yield Button("Save", variant="primary", id="override-save")

    def on_mount(self) -> None:
        self.query_one("#override-note", Input).focus()

    def _label(self) -> str:
        return "accepted" if self.query_one("#ov-accepted", RadioButton).value else "rejected"

    @on(Button.Pressed, "#override-save")
    @on(Input.Submitted, "#override-note")
    def save(self) -> None:
        self.dismiss((self._label(), self.query_one("#override-note", Input).value.strip()))

    @on(Button.Pressed, "#override-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
