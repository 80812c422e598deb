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
