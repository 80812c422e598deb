"""New run → dashboard → records decided, pause/resume/cancel, quit while running.

A scripted backend drives the UI-only flows; one test runs the real llama.cpp worker on
a tiny GGUF through the UI end to end."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
from conftest import EXAMPLE_SEEDS, write_models_toml
from fakes import FakeBackend

from gra_local.core.options import RunOptions
from gra_local.tui.app import GraApp
from gra_local.tui.services import Services, llama_backend
from gra_local.tui.settings import Settings


def services(tmp_path: Path, tiny: Path, backend_factory, **last: object) -> Services:
    models = write_models_toml(tmp_path / "models.toml", [("tiny", tiny)])
    run = RunOptions(**({"samples": 2, "max_attempts": 4} | last))
    return Services(models_file=models, backend_factory=backend_factory,
                    settings=Settings(last_seeds=str(EXAMPLE_SEEDS),
                                      last_out_dir=str(tmp_path / "out"), last_run=run))


async def wait_for(pilot, condition, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "timed out waiting for the UI"
        await pilot.pause(0.05)


def long_run(tmp_path: Path, tiny: Path) -> tuple[FakeBackend, GraApp]:
    """A 50-sample run whose calls take 20 ms each: time for the UI to act between them."""
    backend = FakeBackend(script=lambda call: time.sleep(0.02))
    app = GraApp(services(tmp_path, tiny, lambda d: backend, samples=50, max_attempts=50),
                 start="new_run")
    return backend, app


def decided(out: Path) -> list[dict]:
    return [orjson.loads(x) for name in ("accepted.jsonl", "rejected.jsonl")
            if (out / name).exists() for x in (out / name).read_bytes().splitlines()]


async def test_start_run_from_form_and_watch_it_finish(tmp_path: Path, tiny_gguf: Path) -> None:
    app = GraApp(services(tmp_path, tiny_gguf, lambda log_dir: FakeBackend()), start="new_run")
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.current_run is not None and app.current_run.finished)
        await pilot.pause(0.3)
        assert app.current_mode == "dashboard"
        screen = app.screen
        assert "2" in str(screen.query_one("#n-accepted").render())
        assert "complete" in str(screen.query_one("#n-status").render())
    assert len([r for r in decided(tmp_path / "out") if r["decision"] == "accepted"]) == 2
    saved = Settings.model_validate_json(app.services.settings.model_dump_json())
    assert saved.last_run.samples == 2


async def test_bad_seed_file_is_a_notification_not_a_crash(tmp_path: Path, tiny_gguf: Path) -> None:
    app = GraApp(services(tmp_path, tiny_gguf, lambda d: FakeBackend()), start="new_run")
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        app.screen.query_one("#seeds").value = str(tmp_path / "missing.jsonl")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.current_mode == "new_run"
                       and "not started" in str(app.screen.query_one("#estimate").render()))
        assert app.current_run is None and app.is_running


async def test_pause_resume_cancel(tmp_path: Path, tiny_gguf: Path) -> None:
    backend, app = long_run(tmp_path, tiny_gguf)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(backend.calls) > 5)
        await pilot.press("p")
        await pilot.pause(0.3)
        held = len(backend.calls)
        await pilot.pause(0.3)
        assert len(backend.calls) == held  # paused between calls
        await pilot.press("c")
        await wait_for(pilot, lambda: len(backend.calls) > held)
        await pilot.press("x")
        await wait_for(pilot, lambda: app.current_run.finished)
        await pilot.pause(0.2)
        assert "interrupted" in str(app.screen.query_one("#n-status").render())
    run = orjson.loads((tmp_path / "out" / "run.json").read_bytes())
    assert run["status"] == "interrupted"


async def test_quit_while_running_asks_then_stops_cleanly(tmp_path: Path, tiny_gguf: Path) -> None:
    backend, app = long_run(tmp_path, tiny_gguf)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(backend.calls) > 3)
        await pilot.press("ctrl+q")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "QuitWhileRunning"
        await pilot.click("#yes")
        await wait_for(pilot, lambda: app.current_run.finished, timeout=30)
        await wait_for(pilot, lambda: app.return_code is not None, timeout=10)  # it quits itself
    assert orjson.loads((tmp_path / "out" / "run.json").read_bytes())["status"] == "interrupted"


async def test_real_tiny_model_run_through_the_ui(tmp_path: Path, tiny_gguf: Path) -> None:
    app = GraApp(services(tmp_path, tiny_gguf, llama_backend, samples=1, max_attempts=2,
                          panel=1), start="new_run")
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.current_run is not None and app.current_run.finished,
                       timeout=120)
        await pilot.pause(0.3)
        log = "\n".join(str(line) for line in app.screen.query_one("#log").lines)
        assert "loaded tiny" in log
    records = decided(tmp_path / "out")
    assert len(records) == 2 and all(r["models"][0]["name"] == "tiny" for r in records)


async def test_dashboard_only_once_prepared_and_engine_after_it(
        tmp_path: Path, tiny_gguf: Path, monkeypatch) -> None:
    """New run stays while the checks run; the dashboard shows once the run is prepared,
    and the engine's first call comes after the dashboard is up."""
    import threading

    from gra_local import prepare

    release = threading.Event()
    real = prepare.prepare_run

    def slow_prepare(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare, "prepare_run", slow_prepare)
    modes: list[str] = []
    backend = FakeBackend(script=lambda call: modes.append(app.current_mode))
    app = GraApp(services(tmp_path, tiny_gguf, lambda d: backend), start="new_run")
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        await pilot.pause(0.3)
        assert app.current_mode == "new_run" and app.current_run is None
        assert "checking" in str(app.screen.query_one("#estimate").render())
        release.set()
        await wait_for(pilot, lambda: app.current_run is not None and app.current_run.finished)
        assert app.current_mode == "dashboard"
        assert modes and modes[0] == "dashboard"
        assert not app.screen.query_one("#idle").display
