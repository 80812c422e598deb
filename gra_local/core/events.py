"""Typed progress events: what the CLI progress bar and the TUI render.

Events are emitted per model call or per record, never per token. `can_replace` tells a
consumer that a newer event of the same type makes an older, unrendered one obsolete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Event:
    can_replace: ClassVar[bool] = False


@dataclass(frozen=True)
class RunStarted(Event):
    out_dir: str
    resumed: bool
    models: tuple[str, ...]
    samples: int
    rounds: int


@dataclass(frozen=True)
class Notice(Event):
    """Something the user should read (a skipped seed line, a shared role, ...)."""

    message: str


@dataclass(frozen=True)
class StageStarted(Event):
    round: int
    stage: str
    total: int


@dataclass(frozen=True)
class StageProgress(Event):
    """A stage's calls done of its total, sent as each call's result comes back (not only
    per wave: a stage's calls are often one wave), with the tokens its calls produced so
    far where the backend reports them per result."""

    can_replace: ClassVar[bool] = True
    round: int
    stage: str
    done: int
    total: int
    model: str
    tokens: int = 0
    """Completion tokens (scored tokens, for the likelihood stage) of the stage so far,
    those of calls still running included where the backend reports them."""
    running: float = 0.0
    """Calls in flight, counted by the share of their token budgets made (under 1 each):
    the bar shows `done + running`, so it moves between results."""


@dataclass(frozen=True)
class Generating(Event):
    """The text a model has produced so far in the current call (for a live view)."""

    can_replace: ClassVar[bool] = True
    model: str
    stage: str
    text: str


@dataclass(frozen=True)
class ModelLoaded(Event):
    name: str
    seconds: float
    n_gpu_layers: int
    endpoint: str | None = None
    """An endpoint model's servers, scheme://host:port/path, comma-separated (no
    credentials); None for a GGUF model loaded on this machine. `seconds`: connecting."""
    server: str | None = None
    """An endpoint model's server kind (llama.cpp, vllm, ollama, lmstudio, openai)."""
    prompt_tokens_per_s: float | None = None
    """A local model's speed on this machine, measured at its first load (else None)."""
    decode_tokens_per_s: float | None = None
    speed_error: str | None = None
    """Why its speed could not be measured."""


@dataclass(frozen=True)
class Estimate(Event):
    """The run's predicted duration (from its start), once its models' speeds are known."""

    can_replace: ClassVar[bool] = True
    predicted_seconds: float
    note: str
    refined: bool = False
    """From the run's own pace (sent every few seconds), not from the models' speeds alone."""


@dataclass(frozen=True)
class ModelUnloaded(Event):
    name: str


@dataclass(frozen=True)
class RecordDecided(Event):
    id: str
    decision: str
    reason: str
    mean: float | None
    accepted: int  # accepted so far this round
    wanted: int


@dataclass(frozen=True)
class RunFinished(Event):
    status: str  # "complete", "exhausted" (max attempts hit), "interrupted"
    accepted: int
    rejected: int


EventSink = Callable[[Event], None]


def ignore(_: Event) -> None:
    return None
