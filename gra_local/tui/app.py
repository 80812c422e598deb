"""gra-local's Textual app: five screens as modes, every binding with a remappable id.

The app owns the run: the New run screen hands it a prepared RunRequest (`start_run`),
the app shows the dashboard, then starts the engine's worker thread, whose events go to
the dashboard as messages; pause, resume and cancel are the app's methods."""

from __future__ import annotations

import importlib
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Label

from gra_local.tui.services import Services

if TYPE_CHECKING:  # the engine is imported when a run starts, not before the first frame
    from gra_local.core.engine.request import RunRequest
    from gra_local.core.engine.source import Source
    from gra_local.tui.run_session import RunEnded, RunSession, RunView

BUSY = "a run is already going: cancel it first (F3, then x)"


def _screen(module: str, name: str) -> Screen:
    """Screens are imported when first shown: the first frame needs only the first one."""
    return getattr(importlib.import_module(f"gra_local.tui.screens.{module}"), name)()


def gra_app(node: DOMNode) -> GraApp:
    """The GraApp a screen runs in, typed (screens reach the app through this, not getattr)."""
    app = node.app
    if not isinstance(app, GraApp):
        raise TypeError(f"this screen runs in GraApp, not {type(app).__name__}")
    return app


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
        """The run the results screen opens first (the quickstart's run, then the last started)."""
        self.current_run: RunSession | None = None
        """The run started from this app, going or ended; one at a time."""
        self.quit_after_run = False

    def on_mount(self) -> None:
        self.theme = self.services.settings.theme
        if self.services.settings.keymap:
            self.set_keymap(self.services.settings.keymap)
        self.switch_mode(self.start_mode)

    @property
    def run_going(self) -> bool:
        """A run was started and has not ended (its engine may not have started yet)."""
        return self.current_run is not None and not self.current_run.finished

    def start_run(self, request: RunRequest, source: Source | None = None) -> bool:
        """Run a prepared request: show the dashboard, then start the engine. False (with a
        warning) while another run is going. `source`: the run's source of candidates
        (review_only.ReviewSource for a review; None: generation), as `Run` takes it."""
        if self.run_going:
            self.notify(BUSY, severity="warning")
            return False
        import gc

        from gra_local.tui.run_session import RunSession

        # Everything alive now (app, screens, engine modules) lives as long as the app:
        # out of the collector's way, a full collection during the run is far shorter.
        gc.freeze()
        session = RunSession(request, self.services.backend(request.out_dir / "logs"), source)
        self.current_run = session
        self.run_dir = request.out_dir
        self._show_then_launch(session)
        return True

    @work(exclusive=True, group="launch")
    async def _show_then_launch(self, session: RunSession) -> None:
        # Mounting the dashboard costs ~0.1 s of the event loop: let it happen, and the
        # first frame be drawn, before the engine starts, so none of it falls in the run.
        await self.switch_mode("dashboard")
        dashboard = self._dashboard()
        dashboard.follow(session)
        self.call_after_refresh(self._launch, session, dashboard)

    def _dashboard(self) -> RunView:
        from gra_local.tui.run_session import RunView

        screen = self.get_screen_stack("dashboard")[0]
        if not isinstance(screen, RunView):
            raise TypeError(f"the dashboard mode shows {type(screen).__name__}, not a RunView")
        return screen

    def _launch(self, session: RunSession, dashboard: RunView) -> None:
        if session.launched:
            return
        session.launched = True
        self.run_worker(partial(session.run, dashboard), name="engine", group="engine",
                        thread=True, exclusive=True)

    def pause_run(self) -> bool:
        """Hold the engine after the current model call; False when no run is going."""
        if self.current_run is None or not self.run_going:
            return False
        self.current_run.pause.set()
        return True

    def resume_run(self) -> bool:
        if self.current_run is None or not self.run_going:
            return False
        self.current_run.pause.clear()
        return True

    def cancel_run(self) -> bool:
        """Stop after the current model call (the run stays resumable); False when none is
        going. A run whose engine has not started yet starts and stops at once, so it
        still ends with a RunEnded and a run.json."""
        if self.current_run is None or not self.run_going:
            return False
        self.current_run.stop.set()
        self.current_run.pause.clear()
        return True

    def on_run_ended(self, message: RunEnded) -> None:
        """The engine's last message, after the dashboard rendered it (it bubbles up)."""
        if self.quit_after_run:
            self.exit()

    def action_request_quit(self) -> None:
        if not self.run_going:
            self.exit()
            return

        def answer(stop: bool | None) -> None:
            if not stop:
                return
            if not self.cancel_run():  # it ended while the question was open
                self.exit()
                return
            self.quit_after_run = True
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
