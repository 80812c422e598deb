"""The export dialog: every format offered, preference included; choosing preference
renames the file, explains the contested file and clears the include-rejected box."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.widgets import Checkbox, Input, Label, Select

from gra_local.runs.export import FORMATS as CORE_FORMATS
from gra_local.tui.widgets.export_dialog import FORMATS, ExportDialog


class Host(App[None]):
    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.result: object = "not dismissed"

    def on_mount(self) -> None:
        self.push_screen(ExportDialog(self.run_dir), self._done)

    def _done(self, result: object) -> None:
        self.result = result


def test_dialog_offers_every_export_format() -> None:
    assert FORMATS == CORE_FORMATS and "preference" in FORMATS


async def test_preference_in_the_dialog(tmp_path: Path) -> None:
    app = Host(tmp_path / "run")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        dialog = app.screen
        box = dialog.query_one("#export-rejected", Checkbox)
        box.value = True
        dialog.query_one("#export-format", Select).value = "preference"
        await pilot.pause()
        assert dialog.query_one("#export-path", Input).value == str(tmp_path / "run" / "export.preference.jsonl")
        assert "contested.jsonl" in str(dialog.query_one("#export-note", Label).render())
        assert box.disabled and box.value is False
        await pilot.click("#export-save")
        await pilot.pause()
    assert app.result == ("preference", tmp_path / "run" / "export.preference.jsonl", False, True)


async def test_other_formats_keep_include_rejected(tmp_path: Path) -> None:
    app = Host(tmp_path / "run")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        dialog = app.screen
        dialog.query_one("#export-format", Select).value = "preference"
        await pilot.pause()
        dialog.query_one("#export-format", Select).value = "messages"
        await pilot.pause()
        box = dialog.query_one("#export-rejected", Checkbox)
        assert not box.disabled
        box.value = True
        await pilot.click("#export-save")
        await pilot.pause()
    assert app.result == ("messages", tmp_path / "run" / "export.messages.jsonl", True, False)


async def test_contested_split_is_opt_in_for_other_formats(tmp_path: Path) -> None:
    app = Host(tmp_path / "run")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        dialog = app.screen
        box = dialog.query_one("#export-contested", Checkbox)
        assert not box.value and not box.disabled
        box.value = True
        await pilot.click("#export-save")
        await pilot.pause()
    assert app.result == ("alpaca", tmp_path / "run" / "export.alpaca.jsonl", False, True)
