"""The New run screen at a fixed size: the form, the seed preview, the models per role."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLE_SEEDS, write_models_toml

from gra_local.tui.app import GraApp
from gra_local.tui.services import Services
from gra_local.tui.settings import LastRun, Settings


@pytest.fixture
def app(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> GraApp:
    monkeypatch.chdir(tmp_path)  # relative paths on screen: the snapshot is the same anywhere
    shutil.copy(EXAMPLE_SEEDS, tmp_path / "seeds.jsonl")
    shutil.copy(tiny_gguf, tmp_path / "tiny.gguf")
    write_models_toml(Path("models.toml"), [("tiny", Path("tiny.gguf"))])
    settings = Settings(last_run=LastRun(seeds="seeds.jsonl", out_dir="out", samples=5))
    return GraApp(Services(models_file=Path("models.toml"), settings=settings), start="new_run")


async def settle(pilot) -> None:
    for _ in range(100):
        await pilot.pause(0.05)
        preview = str(pilot.app.screen.query_one("#preview").render())
        models = str(pilot.app.screen.query_one("#models").render())
        if "usable" in preview and "generator" in models:
            return
    raise AssertionError("the New run screen did not settle")


async def test_preview_and_models(app: GraApp) -> None:
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        preview = str(app.screen.query_one("#preview").render())
        assert "21 usable, 0 skipped (jsonl)" in preview
        assert "generator    tiny" in str(app.screen.query_one("#models").render())
        app.screen.query_one("#seeds").value = "missing.jsonl"
        await pilot.press("ctrl+t")
        for _ in range(50):
            await asyncio.sleep(0.02)
            if "not found" in str(app.screen.query_one("#preview").render()):
                break
        assert "missing.jsonl" in str(app.screen.query_one("#preview").render())


def test_snapshot(snap_compare, app: GraApp) -> None:
    assert snap_compare(app, terminal_size=(100, 40), run_before=settle)
