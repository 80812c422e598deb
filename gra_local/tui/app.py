"""gra-local's Textual app: five screens as modes, every binding with a remappable id."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Label

from gra_local.tui.services import Services

if TYPE_CHECKING:  # the engine is imported when a run starts, not before the first frame
    from gra_local.core.engine.request import RunRequest
    from gra_local.tui.run_session import RunSession


def _screen(module: str, name: str) -> Screen:
    """Screens are imported when first shown: the first frame needs only the first one."""
    return getattr(importlib.import_module(f"gra_local.tui.screens.{module}"), name)()


class GraApp(App[None]):
    TITLE = "gra-local"
    SUB_TITLE = "Generator → Reviewer panel → Adjudicator, on your machine"
    CSS_PATH = "app.tcss"
    MODES = {
        "models": lambda: _screen("models", "ModelsScreen"),
        "new_run": lambda: _screen("new_run", "NewRunScreen"),
        "dashboard": lambda: _screen("dashboard", "DashboardScreen"),
        "results": lambda: _screen("results", "ResultsScreen"),
        "settings": lambda: _screen("settings", "SettingsScreen"),
    }
    BINDINGS = [
        Binding("f1", "switch_mode('models')", "Models", id="screen.models"),
        Binding("f2", "switch_mode('new_run')", "New run", id="screen.new_run"),
        Binding("f3", "switch_mode('dashboard')", "Run", id="screen.dashboard"),
        Binding("f4", "switch_mode('results')", "Results", id="screen.results"),
        Binding("f5", "switch_mode('settings')", "Settings", id="screen.settings"),
        Binding("ctrl+q", "request_quit", "Quit", id="app.quit", priority=True),
    ]

    def __init__(self, services: Services | None = None, start: str = "models",
                 run_dir: Path | None = None) -> None:
        super().__init__()
        self.services = services or Services()
        self.start_mode = start
        self.run_dir = run_dir
        """The run the results screen opens first (the quickstart's run)."""
        self.current_run: RunSession | None = None
        self.preparing = False
        """True while the New run screen checks seeds and models (the dashboard says so)."""
        self.quit_after_run = False

    def on_mount(self) -> None:
        self.theme = self.services.settings.theme
        if self.services.settings.keymap:
            self.set_keymap(self.services.settings.keymap)
        self.switch_mode(self.start_mode)

    def start_run(self, request: RunRequest) -> None:
        """Called by the New run screen once every check passed."""
        if self.current_run is not None and self.current_run.running:
            self.notify("a run is already going: cancel it first (F3, then x)", severity="warning")
            return
        import gc

        from gra_local.tui.run_session import RunSession

        # Everything alive now (app, screens, engine modules) lives as long as the app:
        # out of the collector's way, a full collection during the run is far shorter.
        gc.freeze()
        backend = self.services.backend(request.out_dir / "logs")
        self.current_run = RunSession(request, backend)
        self.run_dir = request.out_dir
        if self.current_mode == "dashboard":
            self.screen.on_screen_resume()  # already showing (it was mounted during the checks)
        else:
            self.switch_mode("dashboard")

    def action_request_quit(self) -> None:
        run = self.current_run
        if run is None or not run.running:
            self.exit()
            return

        def answer(stop: bool | None) -> None:
            if stop:
                self.quit_after_run = True
                run.pause.clear()
                run.stop.set()
                self.notify("stopping after the current model call, then quitting…")

        self.push_screen(QuitWhileRunning(), answer)


class QuitWhileRunning(ModalScreen[bool]):
    """Closing the app while a run is going asks first; the run stays resumable."""

    DEFAULT_CSS = """
    QuitWhileRunning { align: center middle; }
    QuitWhileRunning > Vertical { width: 60; height: auto; border: thick $warning; padding: 1 2; background: $surface; }
    QuitWhileRunning Horizontal { height: 3; }
    """
    BINDINGS = [Binding("escape", "dismiss(False)", "Keep running", id="quit.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("A run is going. Stop it after the current model call and quit?\n"
                        "Nothing is lost: run the same settings again to resume.")
            with Horizontal():
                yield Button("Stop and quit", id="yes", variant="warning")
                yield Button("Keep running", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
