"""Run dashboard: stage and model, progress, counts, loads, acceptance, elapsed/ETA, a log.

It renders the run the app started (`follow`, then the engine's messages); pause, resume
and cancel ask the app. Pause holds the engine between two model calls; cancel stops it
after the current call (the run stays resumable); all are bindings with ids.
"""

from __future__ import annotations

import time
from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, ProgressBar, RichLog, Static

from gra_local.core.events import (
    Estimate,
    Generating,
    ModelLoaded,
    Notice,
    RecordDecided,
    RunFinished,
    RunStarted,
    StageProgress,
    StageStarted,
)
from gra_local.core.options import MAX_SAMPLES
from gra_local.runs.formatting import MISSING, pct
from gra_local.tui.app import gra_app
from gra_local.tui.run_session import EngineEvent, RunEnded, RunSession

MAX_LOG_LINES_PER_FLUSH = 30
RATE_WINDOW_S = 5.0
"""Tokens a second are shown over this many last seconds of a stage."""
MIN_RATE_SPAN_S = 0.5
"""Fewer seconds than this between the first and last result seen: no rate yet."""
FIGURES = ("accepted", "rejected", "unverified", "adjudicated", "rate", "loads", "elapsed", "eta",
           "status")
COUNTED = ("accepted", "rejected", "unverified", "adjudicated")
"""Counted from RecordDecided events; unverified (kept, no evidence could judge it) is shown
only once a record is."""
IDLE_TEXT = "No run yet: set one up on the New run screen (F2)."


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class StageRate:
    """A stage's pace from its progress events: tokens a second over the last RATE_WINDOW_S
    seconds, and the time its remaining calls will take at its pace so far."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.points: deque[tuple[float, int]] = deque()

    def seen(self, now: float, done: int, tokens: int) -> None:
        self.points.append((now, tokens))
        while len(self.points) > 2 and now - self.points[1][0] > RATE_WINDOW_S:
            self.points.popleft()

    def tokens_per_s(self, now: float) -> float | None:
        if len(self.points) < 2 or self.points[-1][1] == 0:
            return None
        (t0, n0), (t1, n1) = self.points[0], self.points[-1]
        return (n1 - n0) / (t1 - t0) if t1 - t0 >= MIN_RATE_SPAN_S else None

    def seconds_left(self, now: float, done: int, total: int) -> float | None:
        if done <= 0 or now <= self.started:
            return None
        return (now - self.started) / done * max(0, total - done)


class DashboardScreen(Screen):
    BINDINGS = [
        Binding("p", "pause", "Pause", id="run.pause"),
        Binding("c", "resume", "Resume", id="run.resume"),
        Binding("x", "cancel", "Cancel run", id="run.cancel"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.counts = dict.fromkeys(COUNTED, 0)
        self.loads = 0
        self.wanted = 0
        self.predicted: float | None = None
        self._session: RunSession | None = None
        self.stage = StageRate(time.monotonic())
        self.stage_left: float | None = None
        self._started: float | None = None
        self._pending: list[RecordDecided] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(IDLE_TEXT, id="idle")
        with Vertical(id="bars"):
            yield Label("stage: –", id="stage")
            yield ProgressBar(id="stage-bar", show_eta=False)
            yield Label("accepted", id="accepted-label")
            yield ProgressBar(id="accepted-bar", show_eta=False)
        with Grid(id="numbers"):
            for key in FIGURES:
                figure = Static(f"{key}\n–", id=f"n-{key}", classes="figure")
                figure.display = key != "unverified"
                yield figure
        yield Static("", id="live")
        yield RichLog(id="log", wrap=True, markup=False, max_lines=2000)
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)
        self.set_interval(0.1, self._flush_records)
        self.query_one("#idle", Static).display = self._session is None

    def follow(self, session: RunSession) -> None:
        """Render this run from now on: called by the app once this screen is mounted,
        right before it starts the run's engine."""
        if self._session is not None:  # a run after another: its own figures
            self.counts = dict.fromkeys(COUNTED, 0)
            self.loads = 0
            self._pending.clear()
            for key in FIGURES:
                if key != "elapsed":
                    self._set(key, MISSING)
            self.query_one("#n-unverified", Static).display = False
        self._session = session
        self.stage_left = None
        self.predicted = session.request.predicted_seconds
        self._started = time.monotonic()
        self.query_one("#idle", Static).display = False

    def _set(self, key: str, value: str) -> None:
        self.query_one(f"#n-{key}", Static).update(f"{key}\n{value}")

    def _tick(self) -> None:
        if self._started is None or self._session is None or self._session.finished:
            return
        elapsed = time.monotonic() - self._started
        self._set("elapsed", _clock(elapsed))
        if self.predicted is not None:
            self._set("eta", _clock(max(0.0, self.predicted - elapsed)))
        elif self.stage_left is not None:  # no run estimate: this stage's, from its own pace
            self._set("eta", f"stage {_clock(self.stage_left)}")

    def _log(self, text: str) -> None:
        self.query_one("#log", RichLog).write(text)

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        if isinstance(event, RunStarted):
            self.wanted = event.samples
            judged_all = event.samples >= MAX_SAMPLES  # a review: no target, every pair judged
            self.query_one("#accepted-label", Label).update(
                "accepted (a review judges every pair)" if judged_all else "accepted")
            self.query_one("#accepted-bar", ProgressBar).update(
                total=None if judged_all else event.samples, progress=0)
            self._log(f"{'resuming' if event.resumed else 'starting'} run in {event.out_dir}")
            self._set("status", "running")
        elif isinstance(event, StageStarted):
            self.stage, self.stage_left = StageRate(time.monotonic()), None
            self.query_one("#stage", Label).update(f"round {event.round} · {event.stage} · "
                                                   f"0/{event.total} calls")
            self.query_one("#stage-bar", ProgressBar).update(total=event.total, progress=0)
        elif isinstance(event, StageProgress):
            self.stage.seen(time.monotonic(), event.done, event.tokens)
            rate = self.stage.tokens_per_s(time.monotonic())
            speed = f" · {rate:.0f} tok/s" if rate is not None else ""
            self.query_one("#stage", Label).update(
                f"round {event.round} · {event.stage} · {event.model} · "
                f"{event.done}/{event.total} calls{speed}")
            self.query_one("#stage-bar", ProgressBar).update(total=event.total,
                                                             progress=event.done + event.running)
            self.stage_left = self.stage.seconds_left(time.monotonic(), event.done, event.total)
        elif isinstance(event, Generating):
            tail = " ".join(event.text.split())[-400:]
            self.query_one("#live", Static).update(Text(f"{event.model} · {event.stage}: {tail}"))
        elif isinstance(event, ModelLoaded):
            self.loads += 1
            self._set("loads", str(self.loads))
            if event.endpoint is not None:
                self._log(f"connected to {event.name} in {event.seconds:.2f} s "
                          f"({event.server or 'server'} at {event.endpoint})")
            else:
                self._log(f"loaded {event.name} in {event.seconds:.2f} s ({event.n_gpu_layers} GPU layers)")
        elif isinstance(event, RecordDecided):
            self._record(event)
        elif isinstance(event, Notice):
            self._log(f"note: {event.message}")
        elif isinstance(event, Estimate):
            self.predicted = event.predicted_seconds
            if not event.refined:
                self._log(event.note)
        elif isinstance(event, RunFinished):
            self._set("status", event.status)

    def _record(self, event: RecordDecided) -> None:
        # A batch decides many records at once: render them together, ten times a second.
        self._pending.append(event)

    def _flush_records(self) -> None:
        if self._session is not None:
            self._session.flush()  # a progress the throttle held, once the engine goes quiet
        if not self._pending:
            return
        events, self._pending = self._pending, []
        lines = []
        for event in events:
            if event.decision in ("accepted", "rejected", "unverified"):  # an unknown one: logged only
                self.counts[event.decision] += 1
            if event.reason.startswith("adjudicated"):
                self.counts["adjudicated"] += 1
            mean = f"μ={event.mean:.2f}" if event.mean is not None else "μ=–"
            lines.append(f"{event.id}: {event.decision} ({event.reason}, {mean})")
        for key in COUNTED:
            self._set(key, str(self.counts[key]))
        if self.counts["unverified"]:
            self.query_one("#n-unverified", Static).display = True
        # Like the CLI's summary: the share of decided records accepted, unverified included.
        decided = self.counts["accepted"] + self.counts["rejected"] + self.counts["unverified"]
        self._set("rate", pct(self.counts["accepted"] / decided if decided else None))
        last = events[-1]
        self.query_one("#accepted-bar", ProgressBar).update(progress=min(last.accepted, last.wanted))
        if len(lines) > MAX_LOG_LINES_PER_FLUSH:  # a whole batch at once: keep the UI fluid
            skipped = len(lines) - MAX_LOG_LINES_PER_FLUSH
            lines = [f"… {skipped} more records decided (all are in the output files)"] + \
                lines[-MAX_LOG_LINES_PER_FLUSH:]
        self._log("\n".join(lines))

    def on_run_ended(self, message: RunEnded) -> None:
        self._flush_records()
        if self._started is not None:  # a run shorter than a tick still shows its time
            self._set("elapsed", _clock(time.monotonic() - self._started))
        if message.error:
            self._set("status", "failed")
            self._log(f"error: {message.error}")
            self.notify(message.error, title="Run failed", severity="error", timeout=10)
        elif message.result is not None:
            self._set("status", message.result.status)
            self._log(f"run {message.result.status}: {message.result.out_dir}")
            self.notify(f"Run {message.result.status}: results in {message.result.out_dir}")

    def action_pause(self) -> None:
        if gra_app(self).pause_run():
            self._set("status", "paused")
            self._log("paused: holding after the current model call")

    def action_resume(self) -> None:
        if gra_app(self).resume_run():
            self._set("status", "running")
            self._log("resumed")

    def action_cancel(self) -> None:
        if gra_app(self).cancel_run():
            self._set("status", "stopping")
            self._log("stopping after the current model call; rerun the same settings to resume")
