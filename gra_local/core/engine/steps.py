"""The calls of each stage as step generators (see waves.py): generate a candidate (draft,
then answer), one reviewer's verdict or scores, one adjudication.

Each yields its requests and is sent their results; each records its calls, tokens and
parse outcomes, and snapshots its candidate after its last call. A panel's slots that
share a model are asked in the same wave, so a slot's result may come back after another
slot of that candidate settled it (failed it): such a result is counted, never applied.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from pydantic import BaseModel

from gra_local.core import prompts
from gra_local.core.backend import ChatRequest, ChatResult
from gra_local.core.candidate import Candidate
from gra_local.core.config import Role
from gra_local.core.decide import adjudicator_keeps
from gra_local.core.engine.waves import StageContext, Steps
from gra_local.core.grammars import GRAMMARS, MAX_CHARS, InvalidOutput, parse_json, token_budget
from gra_local.core.quality.expected import (
    SCORE_PROBES,
    VERDICT_PROBES,
    pass_probabilities,
    score_distributions,
)
from gra_local.core.records import (
    Adjudication,
    DraftInstruction,
    InstructionVerdict,
    Reason,
    Review,
    Scores,
    Tokens,
)

MAX_SLOT_FAILURES = 2  # a panel slot gets at most two replacement reviewers
MAX_ADJUDICATORS = 2  # adjudicators tried before a contested sample is rejected
RETRY_TEMPERATURE_BOOST = 0.4

M = TypeVar("M", bound=BaseModel)
TOO_LONG = "too_long"


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


def reply_room(out_type: type[BaseModel]) -> int:
    """Tokens a grammar-bound reply needs free in the context, or the call is "too_long":
    its grammar's longest reply at 2 characters a token (ASCII JSON runs 3–4), a quarter of
    its `token_budget`, which only bounds the decode (a reply that finds less room is cut,
    and invalid, like any reply cut by its budget)."""
    return MAX_CHARS[out_type] // 2


def too_long(ctx: StageContext, model: str, stage: str, result: ChatResult,
             room: int) -> TooLong | None:
    """The result as a TooLong, or None when it is not one (finish_reason "too_long"). Never
    retried (the same prompt cannot shrink) and never the model's invalid output."""
    if result.finish_reason != TOO_LONG:
        return None
    return TooLong(model, stage, result.prompt_tokens, room,
                   ctx.pool.session(model).info.n_ctx)  # loaded: it just answered


def ask_steps(ctx: StageContext, model: str, stage: str, role: Role,
              messages: list[dict[str, str]], out_type: type[M], tokens: Tokens, seed: int,
              wanted: Callable[[], bool] | None = None,
              on_too_long: Callable[[TooLong], None] | None = None,
              probe: Callable[[ChatResult], None] | None = None,
              ) -> Generator[ChatRequest, ChatResult, tuple[M | None, list[str]]]:
    """A grammar-constrained call, validated; one retry; None if both fail. A prompt too
    long for the model's context is not retried: `on_too_long` hears it, and None returns.
    With `probe`, the reply's value positions are probed (core.quality.expected) and
    `probe` hears the valid result.

    The retry re-samples the same messages with a new seed and a hotter temperature
    rather than showing the model its bad reply: on SmolLM2-135M over the 21 example
    seeds (annotate + draft) that took validity from 33/42 to 40/42, where a repair prompt
    fixed none of its failures (scripts/tune_prompts.py); the unchanged prompt also keeps
    llama.cpp's prefix cache warm. No retry once `wanted` says the answer no longer
    matters (another call settled the sample meanwhile).
    """
    sampling = ctx.registry.get(model).sampling_for(role)
    reasons: list[str] = []
    for retry in (0, 1):
        if retry and wanted is not None and not wanted():
            ctx.stats.record_structured(model, stage, "abandoned", reasons)
            return None, reasons
        temperature = sampling.temperature
        if retry:
            temperature = min(1.0, max(temperature, sampling.temperature + RETRY_TEMPERATURE_BOOST))
        result = yield ChatRequest(
            messages=messages, temperature=temperature, top_p=sampling.top_p,
            max_tokens=token_budget(out_type), repeat_penalty=sampling.repeat_penalty,
            seed=seed + retry, grammar=GRAMMARS[out_type], stream_partials=ctx.live_text,
            min_room=reply_room(out_type), probe_after=_probes(out_type) if probe is not None else [])
        if (long := too_long(ctx, model, stage, result, reply_room(out_type))) is not None:
            if on_too_long is not None:  # nothing was decoded: no call, no tokens to count
                on_too_long(long)
            if reasons:  # counted as invalid replies, with no outcome
                ctx.stats.record_structured(model, stage, "abandoned", reasons)
            return None, reasons
        ctx.stats.record_call(model, stage, result)
        tokens.add(result.prompt_tokens, result.completion_tokens)
        try:
            obj = parse_json(result.text, out_type, result.finish_reason)
        except InvalidOutput as exc:
            reasons.append(exc.reason)
            continue
        ctx.stats.record_structured(model, stage, "repaired" if retry else "first_try", reasons)
        if probe is not None:
            probe(result)
        return obj, reasons
    ctx.stats.record_structured(model, stage, "failed", reasons)
    return None, reasons


def _probes(out_type: type[BaseModel]) -> list[str]:
    return SCORE_PROBES if out_type is Scores else VERDICT_PROBES


# --- generate -----------------------------------------------------------------------


def generate_steps(ctx: StageContext, cand: Candidate) -> Steps:
    """The draft instruction (unless the journal has it), then the answer to it."""
    if cand.failed or cand.response is not None:
        return
    if cand.draft is None:
        draft, reasons = yield from ask_steps(
            ctx, cand.generator, "generate", Role.GENERATOR,
            prompts.draft(cand.domain, cand.examples, cand.seed), DraftInstruction, cand.tokens,
            cand.call_seed("draft"), on_too_long=partial(_too_long, cand))
        if draft is None:  # a too-long prompt failed it already (the first reason stays)
            cand.fail(Reason.GENERATION_FAILED,
                      f"{cand.generator} wrote no valid instruction ({'; '.join(reasons)})")
            ctx.snapshot(cand)
            return
        cand.draft = draft
        ctx.snapshot(cand)
    sampling = ctx.registry.get(cand.generator).sampling_for(Role.GENERATOR)
    messages = prompts.answer(cand.draft.instruction)
    for retry in (0, 1):
        result = yield ChatRequest(
            messages=messages, temperature=sampling.temperature, top_p=sampling.top_p,
            max_tokens=sampling.max_tokens, repeat_penalty=sampling.repeat_penalty,
            seed=cand.call_seed("answer", retry), stream_partials=ctx.live_text)
        if (long := too_long(ctx, cand.generator, "generate", result, sampling.max_tokens)) is not None:
            _too_long(cand, long)  # nothing was decoded: no call, no tokens to count
            break
        ctx.stats.record_call(cand.generator, "generate", result)
        cand.tokens.add(result.prompt_tokens, result.completion_tokens)
        text = result.text.strip()
        if result.finish_reason != "length" and text:
            cand.response = text
            break
    else:
        cand.fail(Reason.GENERATION_FAILED,
                  f"{cand.generator}'s answer was empty or ran past max_tokens "
                  f"({sampling.max_tokens}) twice")
    ctx.snapshot(cand)


def _too_long(cand: Candidate, long: TooLong) -> None:
    """The candidate cannot fit a model's context: rejected `too_long`, never retried."""
    cand.fail(Reason.TOO_LONG, long.detail)


def generate_calls(cand: Candidate) -> int:
    """Calls `generate_steps` expects to make (progress)."""
    return 2 if cand.draft is None else 1


# --- review ---------------------------------------------------------------------------


def _replace_reviewer(cand: Candidate, slot: int, usable: Callable[[list[str]], list[str]]) -> bool:
    """Swap a failed reviewer for another (never a model dropped from the run: `usable`);
    False when the slot has failed too often or no reviewer is left."""
    failed = cand.reviews[slot]
    cand.failed_reviewers.append(failed.model)
    left = usable(cand.replacements)
    if failed.failures + 1 > MAX_SLOT_FAILURES or not left:
        return False
    in_use = {r.model for r in cand.reviews} | {cand.generator}
    fresh = [n for n in left if n not in in_use and n not in cand.failed_reviewers]
    if fresh:
        pick = fresh[0]
    else:  # too few models: repeat the one that failed least
        pick = min(left, key=lambda n: (cand.failed_reviewers.count(n), n))
        cand.shared = True
    cand.reviews[slot] = Review(model=pick, failures=failed.failures + 1, extra=failed.extra)
    return True


def _slot_failed(ctx: StageContext, cand: Candidate, slot: int, what: str, reasons: list[str]) -> None:
    if not _replace_reviewer(cand, slot, ctx.pool.usable):
        cand.fail(Reason.REVIEW_FAILED, f"panel slot {slot + 1}: no valid {what} after "
                  f"{MAX_SLOT_FAILURES + 1} reviewers ({'; '.join(reasons)})")


def verdict_steps(ctx: StageContext, cand: Candidate, slot: int) -> Steps:
    review = cand.reviews[slot]
    if cand.failed or review.verdict is not None:
        return  # any fail from any reviewer already rejected the sample
    assert cand.draft is not None
    verdict, reasons = yield from ask_steps(
        ctx, review.model, "review_a", Role.REVIEWER,
        prompts.review_instruction(cand.draft.instruction, cand.seed), InstructionVerdict, cand.tokens,
        cand.call_seed("review_a", slot, review.failures), wanted=lambda: not cand.failed,
        on_too_long=partial(_too_long, cand), probe=partial(_pass_probs, review))
    if cand.failed:
        pass  # too long, or another slot of this wave rejected it first: the rest is not asked
    elif verdict is None:
        _slot_failed(ctx, cand, slot, "instruction verdict", reasons)
    else:
        review.verdict = verdict
        if not verdict.passed and cand.canary is None and not ctx.weighted_vetoes:
            # a canary's whole panel must judge; weighted vetoes are summed after the stage
            cand.fail(Reason.INSTRUCTION_FAILED, f"{review.model} failed the instruction on: "
                      f"{', '.join(verdict.failed_fields)}")
    ctx.snapshot(cand)


def score_steps(ctx: StageContext, cand: Candidate, slot: int) -> Steps:
    review = cand.reviews[slot]
    if cand.failed or review.scores is not None:
        return
    assert cand.draft is not None and cand.response is not None
    probed: list[ChatResult] = []
    scores, reasons = yield from ask_steps(
        ctx, review.model, "review_b", Role.REVIEWER,
        prompts.review_response(cand.draft.instruction, cand.response, cand.seed), Scores, cand.tokens,
        cand.call_seed("review_b", slot, review.failures), wanted=lambda: not cand.failed,
        on_too_long=partial(_too_long, cand), probe=lambda r: probed.append(r))
    if cand.failed:
        pass  # too long, or another slot of this wave ran out of reviewers first
    elif scores is None:
        _slot_failed(ctx, cand, slot, "scores", reasons)
    else:
        set_scores(review, scores, probed[-1] if probed else None)
    ctx.snapshot(cand)


def set_scores(review: Review, scores: Scores, result: ChatResult | None) -> None:
    """The sampled scores, their mean, and where the reply's probabilities are known the
    expected scores' mean as `score` (G-Eval, core.quality.expected)."""
    review.scores = scores
    review.sampled_score = round(scores.mean, 9)
    dists = None if result is None else score_distributions(result.text, result.choices)
    if dists is None:
        review.score, review.score_probs = review.sampled_score, None
        return
    review.score_probs = {f: {str(k): round(p, 6) for k, p in d.probs.items()} for f, d in dists.items()}
    review.score = round(sum(d.expected for d in dists.values()) / len(dists), 9)


def _pass_probs(review: Review, result: ChatResult) -> None:
    review.pass_probs = pass_probabilities(result.text, result.choices)


# --- adjudicate -----------------------------------------------------------------------


def adjudicate_steps(ctx: StageContext, cand: Candidate, model: str) -> Steps:
    if cand.failed or cand.adjudication is not None:
        return
    assert cand.draft is not None and cand.response is not None
    scores, reasons = yield from ask_steps(
        ctx, model, "adjudicate", Role.ADJUDICATOR,
        prompts.adjudicate(cand.draft.instruction, cand.response, cand.reviews, cand.seed),
        Scores, cand.tokens, cand.call_seed("adjudicate", cand.adjudication_tries),
        on_too_long=partial(_too_long, cand))
    if cand.failed:
        pass  # too long for the adjudicator's context: rejected `too_long`, no other try
    elif scores is None:
        cand.adjudication_tries += 1
        if cand.adjudication_tries >= MAX_ADJUDICATORS:
            cand.fail(Reason.ADJUDICATION_FAILED, f"no valid adjudication from "
                      f"{cand.adjudication_tries} tries ({'; '.join(reasons)})")
    else:
        score = round(scores.mean, 9)
        cand.adjudication = Adjudication(model=model, scores=scores, score=score,
                                         kept=adjudicator_keeps(score, ctx.options.tau))
    ctx.snapshot(cand)
