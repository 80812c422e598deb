"""Pilot tests of the Settings screen: validate, save as TOML, apply theme and keymap."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static, TextArea

from gra_local.core.errors import ConfigError
from gra_local.core.options import RunOptions
from gra_local.tui.screens.models import ModelsScreen
from gra_local.tui.screens.settings import SettingsScreen, parse_keymap
from gra_local.tui.services import Services
from gra_local.tui.settings import Settings, load_settings, save_settings, settings_path

sys.path.insert(0, str(Path(__file__).parent))
from harness import ScreenHost  # noqa: E402


def host() -> ScreenHost:
    # Only these screens' bindings: the snapshot must not change when another screen does.
    return ScreenHost(SettingsScreen(sources=[ModelsScreen, SettingsScreen]),
                      Services(settings=Settings()))


def test_save_round_trips_and_applies_theme() -> None:
    async def go() -> None:
        app = host()
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert str(settings_path()) in str(screen.query_one("#path", Static).render())
            screen.query_one("#theme", Select).value = "nord"
            screen.query_one("#out_dir", Input).value = "runs/here"
            keymap = screen.query_one("#keymap", TextArea)
            assert "settings.save = ctrl+s" in keymap.text
            keymap.text = keymap.text.replace("settings.save = ctrl+s", "settings.save = ctrl+w")
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert app.theme == "nord"
            assert app.services.settings.keymap == {"settings.save": "ctrl+w"}
            await pilot.press("ctrl+w")  # the remapped key saves now
            await pilot.pause()
            assert not [n for n in app._notifications if n.severity == "error"]
        saved = load_settings()
        assert (saved.theme, saved.default_out_dir) == ("nord", "runs/here")
        assert saved.keymap == {"settings.save": "ctrl+w"}

    asyncio.run(go())


def test_invalid_keymap_is_refused_with_a_notification() -> None:
    async def go() -> None:
        app = host()
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            app.screen.query_one("#keymap", TextArea).text = "no.such.binding = f9"
            await pilot.click("#save")
            await pilot.pause()
            errors = [n for n in app._notifications if n.severity == "error"]
            assert errors and "no.such.binding" in errors[0].message
            assert isinstance(app.screen, SettingsScreen)
        assert not settings_path().exists()

    asyncio.run(go())


def test_default_lists_every_screen_binding() -> None:
    async def go() -> None:
        app = ScreenHost(SettingsScreen(), Services(settings=Settings()))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            text = app.screen.query_one("#keymap", TextArea).text
            assert "models.add = a" in text and "settings.save = ctrl+s" in text

    asyncio.run(go())


def test_parse_keymap() -> None:
    defaults = {"a.one": "f1", "a.two": "f2"}
    assert parse_keymap("# c\na.one = f1\na.two = ctrl+x , f3\n", defaults) == {"a.two": "ctrl+x,f3"}


def test_snapshot(snap_compare) -> None:
    async def run_before(pilot) -> None:
        pilot.app.screen.query_one("#path", Static).update("Settings file: <config dir>/settings.toml")
        await pilot.pause()

    assert snap_compare(host(), terminal_size=(100, 30), run_before=run_before)


def test_app_switches_between_models_and_settings() -> None:
    from gra_local.tui.app import GraApp

    async def go() -> None:
        app = GraApp(services=Services(settings=Settings()))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, ModelsScreen)
            await pilot.press("f5")
            await pilot.pause()
            assert isinstance(app.screen, SettingsScreen)
            await pilot.press("f1")
            await pilot.pause()
            assert isinstance(app.screen, ModelsScreen)
            await app.workers.wait_for_complete()

    asyncio.run(go())


# --- the settings file: the last run as RunOptions, older files migrated ----------------------

OLD_SETTINGS = """theme = "nord"
default_out_dir = "runs"

[last_run]
seeds = "my-seeds.jsonl"
out_dir = "runs/first"
samples = 25
max_attempts = 60
rounds = 2
panel = 2
tau = 7.5
delta = 1.0
dedup_threshold = 0.85
canaries = 4
"""


def test_old_last_run_keys_are_migrated_not_refused() -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OLD_SETTINGS, encoding="utf-8")
    settings = load_settings()
    assert (settings.last_seeds, settings.last_out_dir) == ("my-seeds.jsonl", "runs/first")
    assert settings.last_run == RunOptions(samples=25, max_attempts=60, rounds=2, panel=2, tau=7.5,
                                           delta=1.0, dedup_threshold=0.85, canaries=4)
    save_settings(settings)
    text = path.read_text(encoding="utf-8")
    assert 'last_seeds = "my-seeds.jsonl"' in text and "\nseeds" not in text
    assert load_settings() == settings


def test_a_threshold_turned_off_is_remembered() -> None:
    settings = Settings(last_run=RunOptions(samples=3, dedup_threshold=None, minhash=False))
    save_settings(settings)
    assert 'dedup_threshold = "off"' in settings_path().read_text(encoding="utf-8")
    assert load_settings().last_run == settings.last_run
    assert Settings.model_validate(settings.model_dump()) == settings  # the Settings screen's copy


def test_settings_file_errors_name_the_key() -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[last_run]\nsamples = 3\ntau = 11\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == f"{path}: key 'last_run.tau': Input should be less than or equal to 10"
    path.write_text("[last_run]\nsamples = 3\ntemperature = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="key 'last_run.temperature': unknown key"):
        load_settings()
