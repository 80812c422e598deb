"""The calls of each stage as step generators (see waves.py): generate a candidate (draft,
then answer), one reviewer's verdict or scores, one adjudication.

Each yields its requests and is sent their results; each records its calls, tokens and
parse outcomes, and snapshots its candidate after its last call. A panel's slots that
share a model are asked in the same wave, so a slot's result may come back after another
slot of that candidate settled it (failed it): such a result is counted, never applied.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

from pydantic import BaseModel

from gra_local.core import prompts
from gra_local.core.backend import ChatRequest, ChatResult
from gra_local.core.candidate import Candidate
from gra_local.core.config import Role
from gra_local.core.decide import adjudicator_keeps
from gra_local.core.engine.waves import StageContext, Steps
from gra_local.core.grammars import GRAMMARS, InvalidOutput, parse_json, token_budget
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


def ask_steps(ctx: StageContext, model: str, stage: str, role: Role,
              messages: list[dict[str, str]], out_type: type[M], tokens: Tokens, seed: int,
              wanted: Callable[[], bool] | None = None,
              ) -> Generator[ChatRequest, ChatResult, tuple[M | None, list[str]]]:
    """A grammar-constrained call, validated; one retry; None if both fail.

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
            seed=seed + retry, grammar=GRAMMARS[out_type], stream_partials=ctx.live_text)
        ctx.stats.record_call(model, stage, result)
        tokens.add(result.prompt_tokens, result.completion_tokens)
        try:
            obj = parse_json(result.text, out_type, result.finish_reason)
        except InvalidOutput as exc:
            reasons.append(exc.reason)
            continue
        ctx.stats.record_structured(model, stage, "repaired" if retry else "first_try", reasons)
        return obj, reasons
    ctx.stats.record_structured(model, stage, "failed", reasons)
    return None, reasons


# --- generate -----------------------------------------------------------------------


def generate_steps(ctx: StageContext, cand: Candidate) -> Steps:
    """The draft instruction (unless the journal has it), then the answer to it."""
    if cand.failed or cand.response is not None:
        return
    if cand.draft is None:
        draft, reasons = yield from ask_steps(
            ctx, cand.generator, "generate", Role.GENERATOR,
            prompts.draft(cand.domain, cand.examples), DraftInstruction, cand.tokens,
            cand.call_seed("draft"))
        if draft is None:
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


def generate_calls(cand: Candidate) -> int:
    """Calls `generate_steps` expects to make (progress)."""
    return 2 if cand.draft is None else 1


# --- review ---------------------------------------------------------------------------


def _replace_reviewer(cand: Candidate, slot: int) -> bool:
    """Swap a failed reviewer for another; False when the slot has failed too often."""
    failed = cand.reviews[slot]
    cand.failed_reviewers.append(failed.model)
    if failed.failures + 1 > MAX_SLOT_FAILURES:
        return False
    in_use = {r.model for r in cand.reviews} | {cand.generator}
    fresh = [n for n in cand.replacements if n not in in_use and n not in cand.failed_reviewers]
    if fresh:
        pick = fresh[0]
    else:  # too few models: repeat the one that failed least
        pick = min(cand.replacements, key=lambda n: (cand.failed_reviewers.count(n), n))
        cand.shared = True
    cand.reviews[slot] = Review(model=pick, failures=failed.failures + 1)
    return True


def _slot_failed(cand: Candidate, slot: int, what: str, reasons: list[str]) -> None:
    if not _replace_reviewer(cand, slot):
        cand.fail(Reason.REVIEW_FAILED, f"panel slot {slot + 1}: no valid {what} after "
                  f"{MAX_SLOT_FAILURES + 1} reviewers ({'; '.join(reasons)})")


def verdict_steps(ctx: StageContext, cand: Candidate, slot: int) -> Steps:
    review = cand.reviews[slot]
    if cand.failed or review.verdict is not None:
        return  # any fail from any reviewer already rejected the sample
    assert cand.draft is not None
    verdict, reasons = yield from ask_steps(
        ctx, review.model, "review_a", Role.REVIEWER,
        prompts.review_instruction(cand.draft.instruction), InstructionVerdict, cand.tokens,
        cand.call_seed("review_a", slot, review.failures), wanted=lambda: not cand.failed)
    if cand.failed:
        pass  # another slot of this wave rejected the sample first: the rest is not asked
    elif verdict is None:
        _slot_failed(cand, slot, "instruction verdict", reasons)
    else:
        review.verdict = verdict
        if not verdict.passed and cand.canary is None:  # a canary's whole panel must judge
            failed_on = [k for k, v in verdict.model_dump().items() if v == "fail"]
            cand.fail(Reason.INSTRUCTION_FAILED,
                      f"{review.model} failed the instruction on: {', '.join(failed_on)}")
    ctx.snapshot(cand)


def score_steps(ctx: StageContext, cand: Candidate, slot: int) -> Steps:
    review = cand.reviews[slot]
    if cand.failed or review.scores is not None:
        return
    assert cand.draft is not None and cand.response is not None
    scores, reasons = yield from ask_steps(
        ctx, review.model, "review_b", Role.REVIEWER,
        prompts.review_response(cand.draft.instruction, cand.response), Scores, cand.tokens,
        cand.call_seed("review_b", slot, review.failures), wanted=lambda: not cand.failed)
    if cand.failed:
        pass  # another slot of this wave ran out of reviewers first
    elif scores is None:
        _slot_failed(cand, slot, "scores", reasons)
    else:
        review.scores = scores
        review.score = round(scores.mean, 9)
    ctx.snapshot(cand)


# --- adjudicate -----------------------------------------------------------------------


def adjudicate_steps(ctx: StageContext, cand: Candidate, model: str) -> Steps:
    if cand.failed or cand.adjudication is not None:
        return
    assert cand.draft is not None and cand.response is not None
    scores, reasons = yield from ask_steps(
        ctx, model, "adjudicate", Role.ADJUDICATOR,
        prompts.adjudicate(cand.draft.instruction, cand.response, cand.reviews), Scores,
        cand.tokens, cand.call_seed("adjudicate", cand.adjudication_tries))
    if scores is None:
        cand.adjudication_tries += 1
        if cand.adjudication_tries >= MAX_ADJUDICATORS:
            cand.fail(Reason.ADJUDICATION_FAILED, f"no valid adjudication from "
                      f"{cand.adjudication_tries} tries ({'; '.join(reasons)})")
    else:
        score = round(scores.mean, 9)
        cand.adjudication = Adjudication(model=model, scores=scores, score=score,
                                         kept=adjudicator_keeps(score, ctx.options.tau))
    ctx.snapshot(cand)
