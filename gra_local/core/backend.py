"""The Backend protocol: the only way the engine reaches a model.

`gra_local.backends.llama_process` implements it with one llama.cpp worker process per
loaded model; tests may implement it with scripted answers to exercise the scheduler.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field

from gra_local.core.config import ModelSpec


class ChatRequest(BaseModel):
    messages: list[dict[str, str]]
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    repeat_penalty: float = 1.0
    grammar: str | None = None
    """GBNF grammar constraining the output, or None for free text."""
    stream_partials: bool = False
    """Ask the backend for the text generated so far while it runs (a watching UI)."""


class ChatResult(BaseModel):
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int
    prompt_evaluated: int | None = None
    """Prompt tokens actually evaluated (the rest came from the reused prefix cache)."""
    seconds: float = 0.0


class LoadInfo(BaseModel):
    name: str
    seconds: float
    n_gpu_layers: int
    n_ctx: int
    gpu_offload: bool = False
    details: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class Session(Protocol):
    """A loaded model."""

    info: LoadInfo

    def chat(self, request: ChatRequest) -> ChatResult: ...

    def close(self) -> None: ...


class Backend(Protocol):
    def load(self, spec: ModelSpec) -> Session:
        """Load a model; raises ModelError with a readable message on failure."""
        ...
