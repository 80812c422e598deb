"""The Backend protocol: the only way the engine reaches a model.

`gra_local.backends.llama.process` implements it with one llama.cpp worker process per
loaded model; tests may implement it with scripted answers to exercise the scheduler.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

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
    min_room: int | None = None
    """Reply tokens the context must still hold after the prompt, or the request comes back
    "too_long" undecoded (None: all of `max_tokens`). A grammar-bound reply asks for the
    length its grammar allows, less than its `max_tokens` (a generous bound that never cuts
    it short), and its budget is then cut to the room the prompt leaves."""
    probe_after: list[str] = Field(default_factory=list)
    """Report the next-token distribution (`ChatResult.choices`) at every reply position
    that follows one of these strings (`'": '` before a score, `'": "'` before a verdict),
    and at the position after a probed one whose chosen token is all digits (a number's
    further digits: "1" may become "10"). Empty: no probes. A backend that cannot see token
    probabilities returns no choices; the engine then uses the sampled values."""
    fresh_cache: bool = False
    """Empty the model's prompt cache before the call that holds this request (set by the
    engine on a stage's first call to each model, waves.py): what a stage decodes then
    depends only on its own requests, never on what the worker decoded before (a warm
    annotation cache skips calls, and reused prefixes change batched numerics). A backend
    without such a cache ignores it."""


class TokenChoice(BaseModel):
    """The distribution a grammar-bound reply chose one token from."""

    offset: int
    """Character offset in `ChatResult.text` where the chosen token's text begins."""
    probs: dict[str, float]
    """Text of each grammar-allowed token → its probability under the model's own logits
    (softmax at temperature 1 over the allowed tokens only; tokens that spell the same text
    summed; entries under 0.001 left out)."""


class ChatResult(BaseModel):
    text: str
    finish_reason: str
    """"stop", "length" (ran into max_tokens or the context), or "cancelled" (a `chat_many`
    stopped by its cancel event before this request finished: never a reply, never recorded),
    or "error" (no reply: the model's worker died or missed its deadline, waves.py; the
    call counts as that model's failure), or "too_long" (never decoded: the prompt's tokens
    plus `min_room` exceed the context one sequence of this model may use; text "",
    completion_tokens 0, prompt_tokens the prompt's real length; the call's other requests go
    on; a retry cannot help, so the engine rejects the candidate with reason `too_long`)."""
    prompt_tokens: int
    completion_tokens: int
    prompt_evaluated: int | None = None
    """Prompt tokens actually evaluated (the rest came from the reused prefix cache)."""
    seconds: float = 0.0
    first_token_seconds: float | None = None
    """Seconds until the first token: the prompt's share of `seconds` (None: not measured)."""
    choices: list[TokenChoice] = Field(default_factory=list)
    """One per probed position (`ChatRequest.probe_after`), in reply order."""


class ScoreRequest(BaseModel):
    """Teacher-forced scoring of a given response, no sampling: how likely the model finds
    each of its tokens after the instruction, and after an empty instruction."""

    messages: list[dict[str, str]]
    """The chat before the response (system and user turns); the response is the
    assistant turn that follows, as the model's chat template lays it out."""
    baseline: list[dict[str, str]]
    """The same chat with an empty user turn: the reference of PMI (= −log IFD)."""
    response: str


class ScoreResult(BaseModel):
    finish_reason: str
    """"ok"; "empty" (the response has no token); "cancelled"; "error" (no reply: the
    worker was lost)."""
    logprobs: list[float] = Field(default_factory=list)
    """log p(token | chat, earlier response tokens) of each scored response token, in order."""
    baseline_logprobs: list[float] = Field(default_factory=list)
    """The same tokens' log-probs after the empty instruction."""
    end_logprob: float | None = None
    """log p(end-of-turn token | chat + whole response); None when the chat template has no
    end-of-turn token, or the response was cut (`truncated`)."""
    response_tokens: int = 0
    """Tokens of the whole response (more than `len(logprobs)` when truncated)."""
    truncated: bool = False
    """The chat and response do not fit the context: scored on the tokens that fit."""
    prompt_tokens: int = 0
    seconds: float = 0.0


@runtime_checkable
class Scorer(Protocol):
    """A session that can score given text (local llama.cpp models; a server returns
    probabilities only for tokens it generates, so endpoint models cannot)."""

    def score_many(self, requests: Sequence[ScoreRequest],
                   cancel: threading.Event | None = None) -> list[ScoreResult]:
        """Results in request order; unfinished ones "cancelled" once `cancel` is set."""
        ...


class LoadInfo(BaseModel):
    name: str
    seconds: float
    n_gpu_layers: int
    n_ctx: int
    gpu_offload: bool = False
    n_parallel: int = 1
    """Sequences this session decodes together in one `chat_many` (1: one at a time)."""
    details: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class Session(Protocol):
    """A loaded model."""

    info: LoadInfo

    def chat(self, request: ChatRequest) -> ChatResult: ...

    def chat_many(self, requests: Sequence[ChatRequest],
                  cancel: threading.Event | None = None) -> list[ChatResult]:
        """Every request at once, results in request order. A backend decodes up to
        `info.n_parallel` of them together (continuous batching: a finished sequence's slot
        takes the next request); each keeps its own seed, grammar, budget and stop. When
        `cancel` is set, the call returns soon after with the unfinished requests marked
        "cancelled". Raises WorkerLost when the model's process died or missed its
        deadline: the session is then dead, and a fresh `Backend.load` replaces it."""
        ...

    def close(self) -> None: ...


class Backend(Protocol):
    def load(self, spec: ModelSpec) -> Session:
        """Load a model; raises ModelError with a readable message on failure."""
        ...
