"""Hosting one screen in a minimal app for Pilot tests, with isolated services."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.screen import Screen

from gra_local.tui.services import Services
from gra_local.tui.settings import Settings


class ScreenHost(App[None]):
    """Pushes one screen; exposes `services` and `run_dir` like GraApp does."""

    def __init__(self, screen: Screen, services: Services | None = None,
                 run_dir: Path | None = None) -> None:
        super().__init__()
        self._screen_to_show = screen
        self.services = services or Services(settings=Settings())
        self.run_dir = run_dir

    def on_mount(self) -> None:
        self.push_screen(self._screen_to_show)


async def tables_settled(pilot) -> None:
    """Let every DataTable on the screen finish its deferred sizing, then repaint.

    A DataTable measures new rows on its own idle event. On a loaded machine a snapshot
    may be taken before that, with the header still at the old column widths."""
    from textual.widgets import DataTable

    for _ in range(50):
        tables = list(pilot.app.screen.query(DataTable))
        if not any(t._require_update_dimensions or t._updated_cells for t in tables):
            break
        await pilot.pause(0.02)
    for table in pilot.app.screen.query(DataTable):
        table.refresh(layout=True)
    await pilot.pause()
    await pilot.pause()


async def finish_run(pilot) -> None:
    """Start the run New run shows (ctrl+r) and wait until it has finished and its last
    records are drawn (the dashboard renders them ten times a second)."""
    await pilot.press("ctrl+r")
    for _ in range(400):
        await pilot.pause(0.05)
        run = pilot.app.current_run
        if run is not None and run.finished:
            break
    await pilot.pause(0.4)
