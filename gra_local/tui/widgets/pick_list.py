"""A modal with a SelectionList: dismisses with the chosen values ([] when cancelled)."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, SelectionList


class PickList(ModalScreen[list[Any]]):
    DEFAULT_CSS = """
    PickList { align: center middle; }
    PickList > Vertical { width: 90%; height: 80%; border: thick $accent; background: $surface;
                          padding: 1 2; }
    PickList SelectionList { height: 1fr; }
    PickList Horizontal { height: auto; align: right middle; }
    PickList Button { margin-left: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="pick.cancel")]

    def __init__(self, title: str, options: list[tuple[str, Any, bool]], ok: str = "Add") -> None:
        super().__init__()
        self.title_text, self.options, self.ok = title, options, ok

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, markup=False)
            yield SelectionList[Any](*self.options, id="choices")
            with Horizontal():
                yield Button(self.ok, variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self.dismiss(list(self.query_one("#choices", SelectionList).selected))
        else:
            self.dismiss([])

    def action_cancel(self) -> None:
        self.dismiss([])
