"""Renders engine events on the terminal: a live progress display on a TTY, plain lines
otherwise (CI, pipes). The engine never prints; everything it says arrives here."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from gra_local.core.events import (
    Estimate,
    Event,
    ModelLoaded,
    Notice,
    RecordDecided,
    RunStarted,
    StageProgress,
    StageStarted,
)


class ProgressView:
    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream, stderr=stream is None)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self.progress: Progress | None = None
        # Task ids of the live display; 0 and 1 once it starts (never read before that).
        self.stage_task = TaskID(0)
        self.accept_task = TaskID(0)

    def _line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        elif not self.quiet:
            print(text, file=self.stream, flush=True)

    def emit(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            what = "resuming" if event.resumed else "starting"
            self._line(f"{what} run in {event.out_dir}: {event.samples} accepted samples per round, "
                       f"{event.rounds} round(s), models: {', '.join(event.models)}")
            if self.live:
                self.progress = Progress(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=self.console, transient=False)
                self.progress.start()
                self.accept_task = self.progress.add_task("accepted", total=event.samples)
                self.stage_task = self.progress.add_task("starting", total=1)
        elif isinstance(event, Notice):
            self._line(f"note: {event.message}")
        elif isinstance(event, Estimate) and not event.refined:  # refinements: the app's
            self._line(event.note)
        elif isinstance(event, ModelLoaded):
            self._line(loaded_line(event))
        elif isinstance(event, StageStarted):
            if self.progress is not None:
                self.progress.reset(self.stage_task, total=event.total,
                                    description=f"round {event.round} {event.stage}")
            else:
                self._line(f"round {event.round}: {event.stage} ({event.total} calls)")
        elif isinstance(event, StageProgress):
            if self.progress is not None:
                self.progress.update(self.stage_task, completed=event.done,
                                     description=f"round {event.round} {event.stage} [{event.model}]")
        elif isinstance(event, RecordDecided):
            if self.progress is not None:
                self.progress.update(self.accept_task, completed=min(event.accepted, event.wanted))
            mean = f"μ={event.mean:.2f}" if event.mean is not None else "μ=–"
            self._line(f"{event.id}: {event.decision} ({event.reason}, {mean}); "
                       f"{event.accepted}/{event.wanted} accepted")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def loaded_line(event: ModelLoaded) -> str:
    """`loaded smol in 0.41 s (CPU)`; for an endpoint model, the server it reached:
    `remote: llama.cpp server at http://127.0.0.1:8080/v1 (connected in 0.10 s)`."""
    if event.endpoint is None:
        return f"loaded {event.name} in {event.seconds:.2f} s ({'GPU' if event.n_gpu_layers else 'CPU'})"
    # an endpoint session is connected: the endpoint package (httpx) is imported already
    from gra_local.backends.endpoint.capabilities import CAPABILITIES

    labels: dict[str, str] = {kind: cap.label for kind, cap in CAPABILITIES.items()}
    kind = labels.get(event.server or "", f"{event.server or 'OpenAI-compatible'} server")
    return f"{event.name}: {kind} at {event.endpoint} (connected in {event.seconds:.2f} s)"
