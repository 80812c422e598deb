"""One run driven from the TUI: the engine in a worker thread, its events as messages.

The app owns the session and starts `run` in its worker thread; the engine's sink runs
there and only posts messages (thread-safe) to the view the app named (the dashboard),
never touching a widget. Replaceable events (per-call progress) are throttled to ten a
second, the newest winning, so the UI is never flooded.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from textual.message import Message

from gra_local.core.backend import Backend
from gra_local.core.engine.request import RunRequest, RunResult
from gra_local.core.engine.scheduler import Run
from gra_local.core.engine.source import Source
from gra_local.core.errors import ModelDown, error_message, error_notes
from gra_local.core.events import Event, Notice
from gra_local.tui.errors import EXPECTED_ERRORS

THROTTLE_S = 0.1


class EngineEvent(Message):
    """One engine event, for the dashboard to render."""

    bubble = False  # only the dashboard renders it: the app's queue stays free for input

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class RunEnded(Message):
    """The run's last message: the dashboard renders it, then it bubbles to the app."""

    def __init__(self, result: RunResult | None, error: str | None) -> None:
        super().__init__()
        self.result = result
        self.error = error


@runtime_checkable
class RunView(Protocol):
    """Where a run's messages go: the dashboard, which the app finds by its mode and knows
    by this shape (so the app need not import the screen that imports the app)."""

    def follow(self, session: RunSession) -> None:
        """Render this run from now on; called on the UI thread before its engine starts."""

    def post_message(self, message: Message) -> bool: ...


@dataclass
class RunSession:
    """A run's state, owned by the app: the stop and pause events its methods set, and
    whether the engine is running or has finished."""

    request: RunRequest
    backend: Backend
    source: Source | None = None
    """Where candidates come from (a review's ReviewSource); None: generation."""

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.launched = False  # set on the UI thread before the worker starts: starts once
        self.running = False
        self.finished = False
        self._target: RunView | None = None
        self._last_post = 0.0
        self._held: Event | None = None
        self._lock = threading.Lock()

    def _post(self, event: Event) -> None:
        if self._target is not None:
            self._target.post_message(EngineEvent(event))

    def sink(self, event: Event) -> None:
        """Called by the engine in the worker thread."""
        with self._lock:
            now = time.monotonic()
            if event.can_replace and now - self._last_post < THROTTLE_S:
                self._held = event
                return
            if self._held is not None and not event.can_replace:
                self._post(self._held)
            self._held = None
            self._last_post = now
            self._post(event)

    def flush(self) -> None:
        """Post the event the throttle holds once THROTTLE_S has passed since the last post:
        the engine may go quiet right after it (a long call, a load), and the screen would
        show a stale count until its next event. The UI's timer calls this."""
        with self._lock:
            now = time.monotonic()
            if self._held is not None and now - self._last_post >= THROTTLE_S:
                self._post(self._held)
                self._held, self._last_post = None, now

    def run(self, target: RunView) -> None:
        """The worker thread's body; `target` receives the messages."""
        self._target = target
        self.running = True
        result, error, engine = None, None, None
        try:
            engine = Run(self.request, self.backend, self.sink, self.stop, self.pause,
                         live_text=True, source=self.source)
            result = engine.execute()
        except EXPECTED_ERRORS as exc:  # as the CLI says it: one line, then what failed after
            if isinstance(exc, ModelDown) and engine is not None and not error_notes(exc):
                # a model lost for good stops the run resumable, and run.json says so:
                # shown as a stop with its one line, not as a failure
                self.sink(Notice(error_message(exc)))
                result = RunResult(status=engine.status, out_dir=engine.out,
                                   run_json=engine.run_json)
            else:
                error = "\n".join([error_message(exc), *error_notes(exc)])
        except BaseException as exc:
            # a bug: the dashboard is told the run ended, then it is raised for the worker
            # to report (the app exits with its traceback); the run dir keeps its state
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.running, self.finished = False, True
            with self._lock:
                if self._held is not None:
                    self._post(self._held)
                    self._held = None
            target.post_message(RunEnded(result, error))
