"""gra_local/tui/errors.py: the app shows the errors it expects (a GraError, an OSError) as
a notification and stays up; any other exception is a bug, never turned into one: it
reaches Textual, which ends the app with it (run_test raises it), in a worker thread or on
the UI thread alike."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from textual.worker import WorkerFailed

from gra_local.core.errors import ConfigError
from gra_local.models import discover as discover_module
from gra_local.tui.screens.models import ModelsScreen
from gra_local.tui.screens.settings import SettingsScreen
from gra_local.tui.services import Services
from gra_local.tui.settings import Settings
from gra_local.tui.widgets.model_detail import bench_text

sys.path.insert(0, str(Path(__file__).parent))
from test_models_screen import NotedHost, host, settle  # noqa: E402


def failing(exc: Exception):
    def fail(*args: object, **kwargs: object) -> object:
        raise exc
    return fail


async def press_discover(app: NotedHost) -> None:
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("d")
        await settle(pilot, app)
        assert isinstance(app.screen, ModelsScreen)


@pytest.mark.parametrize("error", [OSError(13, "Permission denied"), ConfigError("bad folder")])
def test_an_expected_error_in_a_worker_is_a_notification(error: Exception,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discover_module, "discover", failing(error))
    app = host()
    asyncio.run(press_discover(app))  # the app stayed up
    assert app.errors() == [f"Discovery failed: {error}"]


def test_a_bug_in_a_worker_is_raised_not_notified(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discover_module, "discover", failing(RuntimeError("a bug")))
    app = host()
    with pytest.raises(WorkerFailed) as raised:
        asyncio.run(press_discover(app))
    assert isinstance(raised.value.error, RuntimeError)
    assert app.errors() == []


class SettingsHost(NotedHost):
    def __init__(self) -> None:
        super().__init__(SettingsScreen(sources=[SettingsScreen]), Services(settings=Settings()))


async def press_save(app: NotedHost) -> None:
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()


def test_an_expected_error_on_the_ui_thread_is_a_notification(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Services, "save_settings", failing(OSError(28, "No space left on device")))
    app = SettingsHost()
    asyncio.run(press_save(app))
    assert len(app.errors()) == 1 and app.errors()[0].startswith("Cannot write ")
    assert "No space left on device" in app.errors()[0]


def test_a_bug_on_the_ui_thread_is_raised_not_notified(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Services, "save_settings", failing(TypeError("a bug")))
    app = SettingsHost()
    with pytest.raises(TypeError, match="a bug"):
        asyncio.run(press_save(app))
    assert app.errors() == []


def test_bench_text_is_none_only_when_there_is_no_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    from gra_local.core.config import ModelSpec
    from gra_local.models.bench import BenchStore

    spec = ModelSpec(name="m", path="/no/such/model.gguf")
    assert bench_text(spec) is None  # the file is not there: an OSError, expected
    monkeypatch.setattr(BenchStore, "latest", failing(KeyError("a bug")))
    with pytest.raises(KeyError):
        bench_text(spec)
