"""One model call with its retry, for every call of a run: structured (a grammar-bound JSON
reply, validated) and free (the generator's answer). Each way a call can fail comes back
as what it is: a prompt too long for the context (`TooLong`, never retried), a reply that
is invalid, empty or cut at max_tokens, and no reply at all (a lost worker, a dropped
model, a server error: finish_reason "error").

The retry re-samples the same messages with a new seed rather than showing the model its
bad reply: on SmolLM2-135M over the 21 example seeds (annotate + draft), a hotter retry
took validity from 33/42 to 40/42, where a repair prompt fixed none of its failures
(scripts/tune_prompts.py); the unchanged prompt also keeps llama.cpp's prefix cache warm.
Structured calls retry RETRY_TEMPERATURE_BOOST hotter; the answer retries at its own
temperature with a new seed (its sampling is the user's, per model, in the models file).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel

from gra_local.core.backend import ChatRequest, ChatResult
from gra_local.core.config import Role
from gra_local.core.engine.waves import StageContext
from gra_local.core.grammars import GRAMMARS, MAX_CHARS, InvalidOutput, parse_json, token_budget
from gra_local.core.records import Tokens

RETRY_TEMPERATURE_BOOST = 0.4
TOO_LONG = "too_long"
NO_REPLY = "no reply (the model's worker failed)"
"""Why a call with finish_reason "error" failed: its worker was lost (killed, crashed,
silent past its deadline), its model dropped, or its server failed the request."""

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class TooLong:
    """A call the model never decoded: its prompt and the reply's room exceed its context."""

    model: str
    stage: str
    prompt_tokens: int
    room: int
    """Reply tokens the call needed free (`ChatRequest.min_room`, else its max_tokens)."""
    n_ctx: int

    @property
    def detail(self) -> str:
        if not self.prompt_tokens:  # a server said so without counting (endpoint models)
            return (f"{self.stage} with {self.model}: its server refused the prompt with "
                    f"{self.room} tokens for the reply as longer than its context")
        return (f"{self.stage} with {self.model}: a prompt of {self.prompt_tokens} tokens and "
                f"{self.room} for the reply exceed its context of {self.n_ctx} tokens")


@dataclass
class Answer(Generic[T]):
    """What a call (and its retry) came to: a value, or why not."""

    value: T | None = None
    reasons: list[str] = field(default_factory=list)
    """Why each try failed, in order (invalid output, empty, cut, no reply)."""
    too_long: TooLong | None = None


@dataclass(frozen=True)
class Call(Generic[T]):
    """One call to make: to whom, what, and how to read the reply."""

    model: str
    stage: str
    role: Role
    messages: list[dict[str, str]]
    read: Callable[[ChatResult], T]
    """The reply's value; raises InvalidOutput with the reason when it has none."""
    seed: Callable[[int], int]
    """The sampling seed of try 0 and of the retry."""
    max_tokens: int
    room: int
    """Reply tokens that must fit in the context beside the prompt, or it is too long."""
    grammar: str | None = None
    structured: bool = True
    """Counted in the model's judge validity (first try, repaired, failed)."""
    boost: float = RETRY_TEMPERATURE_BOOST
    probe_after: tuple[str, ...] = ()


def reply_room(out_type: type[BaseModel]) -> int:
    """Tokens a grammar-bound reply needs free in the context, or the call is "too_long":
    its grammar's longest reply at 2 characters a token (ASCII JSON runs 3–4), a quarter of
    its `token_budget`, which only bounds the decode (a reply that finds less room is cut,
    and invalid, like any reply cut by its budget)."""
    return MAX_CHARS[out_type] // 2


def structured(model: str, stage: str, role: Role, messages: list[dict[str, str]],
               out_type: type[M], seed: int, probe_after: list[str] | None = None) -> Call[M]:
    """A grammar-bound call for a reply of `out_type`."""
    return Call(model, stage, role, messages,
                read=lambda r: parse_json(r.text, out_type, r.finish_reason),
                seed=lambda retry: seed + retry, max_tokens=token_budget(out_type),
                room=reply_room(out_type), grammar=GRAMMARS[out_type],
                probe_after=tuple(probe_after or ()))


def free_text(result: ChatResult, max_tokens: int) -> str:
    """A free reply's text; InvalidOutput when it has none to keep."""
    if result.finish_reason == "error":
        raise InvalidOutput(NO_REPLY)
    if result.finish_reason == "length":
        raise InvalidOutput(f"ran past max_tokens ({max_tokens})")
    text = result.text.strip()
    if not text:
        raise InvalidOutput("empty")
    return text


def ask(ctx: StageContext, call: Call[T], tokens: Tokens, wanted: Callable[[], bool] | None = None,
        heard: Callable[[ChatResult], None] | None = None,
        ) -> Generator[ChatRequest, ChatResult, Answer[T]]:
    """The call, and one retry when its reply has no value. No retry once `wanted` says the
    answer no longer matters (another call settled the sample meanwhile); `heard` gets the
    result whose value was kept (its token probabilities)."""
    sampling = ctx.registry.get(call.model).sampling_for(call.role)
    answer: Answer[T] = Answer()
    for retry in (0, 1):
        if retry and wanted is not None and not wanted():
            _outcome(ctx, call, "abandoned", answer)
            return answer
        temperature = sampling.temperature
        if retry and call.boost:
            temperature = min(1.0, max(temperature, sampling.temperature + call.boost))
        result = yield ChatRequest(
            messages=call.messages, temperature=temperature, top_p=sampling.top_p,
            max_tokens=call.max_tokens, repeat_penalty=sampling.repeat_penalty,
            seed=call.seed(retry), grammar=call.grammar, stream_partials=ctx.live_text,
            min_room=call.room if call.grammar is not None else None,
            probe_after=list(call.probe_after))
        if result.finish_reason == TOO_LONG:  # nothing was decoded: no call, no tokens
            answer.too_long = TooLong(call.model, call.stage, result.prompt_tokens, call.room,
                                      ctx.pool.session(call.model).info.n_ctx)
            if answer.reasons:  # counted as invalid replies, with no outcome
                _outcome(ctx, call, "abandoned", answer)
            return answer
        ctx.stats.record_call(call.model, call.stage, result)
        tokens.add(result.prompt_tokens, result.completion_tokens)
        try:
            answer.value = call.read(result)
        except InvalidOutput as exc:
            answer.reasons.append(exc.reason)
            continue
        _outcome(ctx, call, "repaired" if retry else "first_try", answer)
        if heard is not None:
            heard(result)
        return answer
    _outcome(ctx, call, "failed", answer)
    return answer


def _outcome(ctx: StageContext, call: Call[T], outcome: str, answer: Answer[T]) -> None:
    if call.structured:
        ctx.stats.record_structured(call.model, call.stage, outcome, answer.reasons)
