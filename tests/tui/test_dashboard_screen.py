"""The Run dashboard at a fixed size after a scripted run, and in the middle of a stage
(clock frozen for the snapshots)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from conftest import EXAMPLE_SEEDS, write_models_toml
from fakes import FakeBackend
from harness import finish_run

from gra_local.core.events import ModelLoaded, RecordDecided, StageProgress, StageStarted
from gra_local.core.options import RunOptions
from gra_local.tui.app import GraApp
from gra_local.tui.run_session import EngineEvent
from gra_local.tui.screens import dashboard
from gra_local.tui.services import Services
from gra_local.tui.settings import Settings


def scripted_app(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch,
                 backend: FakeBackend | None = None) -> GraApp:
    monkeypatch.chdir(tmp_path)  # relative paths on screen
    monkeypatch.setattr(dashboard, "_clock", lambda seconds: "0:00:01" if seconds is not None else "–")
    monkeypatch.setattr(dashboard.StageRate, "tokens_per_s", lambda self, now: 42.0)  # no clock
    monkeypatch.setenv("GRA_LOCAL_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copy(EXAMPLE_SEEDS, tmp_path / "seeds.jsonl")
    shutil.copy(tiny_gguf, tmp_path / "tiny.gguf")
    write_models_toml(Path("models.toml"), [("tiny", Path("tiny.gguf"))])
    settings = Settings(last_seeds="seeds.jsonl", last_out_dir="out",
                        # scripted answers, decided by the paper's rule (the fake judges
                        # are not measured on canaries)
                        last_run=RunOptions(samples=3, max_attempts=6, relevance=False,
                                            judge="panel"))
    return GraApp(Services(models_file=Path("models.toml"),
                           backend_factory=lambda d: backend or FakeBackend(), settings=settings),
                  start="new_run")


@pytest.fixture
def app(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> GraApp:
    return scripted_app(tmp_path, tiny_gguf, monkeypatch)


class Held:
    """A script that holds the run at the `nth` call of the first wave of `role` that has
    one, until released (or HOLD_S)."""

    HOLD_S = 5.0

    def __init__(self, role: str, nth: int) -> None:
        self.role, self.nth = role, nth
        self.in_wave: dict[int | None, int] = {}
        self.reached, self.release = threading.Event(), threading.Event()

    def __call__(self, call) -> None:
        self.in_wave[call.wave] = self.in_wave.get(call.wave, 0) + 1
        if call.role == self.role and self.in_wave[call.wave] == self.nth and not self.reached.is_set():
            self.reached.set()
            self.release.wait(self.HOLD_S)


async def test_dashboard_shows_the_finished_run(app: GraApp) -> None:
    async with app.run_test(size=(100, 32)) as pilot:
        await finish_run(pilot)
        screen = app.screen
        assert "3" in str(screen.query_one("#n-accepted").render())
        assert "100%" in str(screen.query_one("#n-rate").render())
        log = "\n".join(str(line) for line in screen.query_one("#log").lines)
        assert "r1-000001: accepted" in log and "run complete" in log


async def test_a_model_behind_a_server_is_logged_as_connected(app: GraApp) -> None:
    async with app.run_test(size=(100, 32)) as pilot:
        await finish_run(pilot)
        app.screen.on_engine_event(EngineEvent(ModelLoaded(
            name="judge-8b", seconds=0.05, n_gpu_layers=0, endpoint="http://gpu-box:8080/v1",
            server="vllm")))
        await pilot.pause(0.1)
        log = "\n".join(str(line) for line in app.screen.query_one("#log").lines)
        assert "connected to judge-8b in 0.05 s (vllm at http://gpu-box:8080/v1)" in log
        assert "GPU layers" not in log.split("connected to judge-8b")[1]


async def test_unverified_records_are_counted_apart_never_as_rejected(app: GraApp) -> None:
    async with app.run_test(size=(100, 32)) as pilot:
        await finish_run(pilot)
        screen = app.screen
        figure = screen.query_one("#n-unverified")
        assert not figure.display  # hidden until a record is kept unverified
        for n, (decision, reason) in enumerate([("unverified", "unverified"),
                                                ("unverified", "unverified"),
                                                ("rejected", "evidence_reject"),
                                                ("accepted", "evidence_accept")]):
            screen.on_engine_event(EngineEvent(RecordDecided(
                id=f"r2-{n}", decision=decision, reason=reason, mean=None, accepted=4, wanted=3)))
        await pilot.pause(0.3)
        assert figure.display and str(figure.render()) == "unverified\n2"
        assert str(screen.query_one("#n-rejected").render()) == "rejected\n1"
        assert str(screen.query_one("#n-accepted").render()) == "accepted\n4"
        assert str(screen.query_one("#n-rate").render()) == "rate\n57%"  # 4 of 7 decided
        log = "\n".join(str(line) for line in screen.query_one("#log").lines)
        assert "r2-0: unverified (unverified, μ=–)" in log


def test_a_stage_pace_gives_tokens_a_second_and_the_time_left() -> None:
    rate = dashboard.StageRate(started=100.0)
    assert rate.tokens_per_s(100.0) is None and rate.seconds_left(100.0, 0, 10) is None
    rate.seen(101.0, 1, 50)
    assert rate.tokens_per_s(101.0) is None  # one point: no span yet
    rate.seen(103.0, 3, 150)
    assert rate.tokens_per_s(103.0) == pytest.approx(50.0)  # (150 - 50) / 2 s
    assert rate.seconds_left(103.0, 3, 10) == pytest.approx(7.0)  # 1 s a call so far, 7 to go
    for t in range(104, 120):
        rate.seen(float(t), 3, 150 + 10 * (t - 103))
    assert rate.tokens_per_s(119.0) == pytest.approx(10.0)  # the last seconds only


async def test_the_stage_line_counts_calls_and_tokens_as_results_come(app: GraApp) -> None:
    """With no run estimate, the ETA is the stage's own, from its pace."""
    async with app.run_test(size=(100, 32)) as pilot:
        await finish_run(pilot)
        screen = app.screen
        screen.predicted = None
        screen._session.finished = False  # type: ignore[union-attr]  # as if still running
        screen.on_engine_event(EngineEvent(StageStarted(round=2, stage="generate", total=8)))
        assert "0/8 calls" in str(screen.query_one("#stage").render())
        screen.stage = dashboard.StageRate(started=time.monotonic() - 4.0)
        screen.stage.seen(time.monotonic() - 2.0, 1, 100)
        screen.on_engine_event(EngineEvent(StageProgress(round=2, stage="generate", done=2,
                                                         total=8, model="tiny", tokens=300)))
        line = str(screen.query_one("#stage").render())
        assert "round 2 · generate · tiny · 2/8 calls · " in line and line.endswith(" tok/s")
        assert screen.query_one("#stage-bar").progress == 2
        # between results, the running calls' share of their work moves the bar
        screen.on_engine_event(EngineEvent(StageProgress(round=2, stage="generate", done=2,
                                                         total=8, model="tiny", tokens=340,
                                                         running=1.25)))
        assert screen.query_one("#stage-bar").progress == 3.25
        assert "2/8 calls" in str(screen.query_one("#stage").render())
        screen._tick()
        assert str(screen.query_one("#n-eta").render()).startswith("eta\nstage ")


def test_snapshot(snap_compare, app: GraApp) -> None:
    assert snap_compare(app, terminal_size=(100, 32), run_before=finish_run)


def test_snapshot_mid_stage(snap_compare, tmp_path: Path, tiny_gguf: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A run held at the fourth call of a scores wave: the stage line and bar show the 3
    calls before it done, the figures what was decided so far, the status running."""
    held = Held("review_b", 4)
    app = scripted_app(tmp_path, tiny_gguf, monkeypatch, FakeBackend(script=held))

    async def mid_stage(pilot) -> None:
        await pilot.press("ctrl+r")
        for _ in range(200):
            await pilot.pause(0.05)
            if held.reached.is_set() and "review_b" in str(pilot.app.screen.query_one("#stage").render()):
                break
        await pilot.pause(0.4)  # events are rendered ten times a second

    try:
        assert snap_compare(app, terminal_size=(100, 32), run_before=mid_stage)
    finally:
        held.release.set()
