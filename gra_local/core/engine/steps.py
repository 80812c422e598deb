"""The calls of each stage for one candidate, as step generators (see waves.py): generate
(draft, then answer), one panel slot's verdict or scores, one adjudication.

Each yields its requests and is sent their results (through calls.ask, which counts calls,
tokens and parse outcomes), adds what it learnt to the candidate, and snapshots it after
its last call. Steps gather evidence; they never decide — except that they ask the
decision (`StageContext.decide`) whether a verdict just given settles the sample, so that
the rest of its panel is not asked. A panel's slots that share a model are asked in the
same wave, so a slot's result may come back after another slot settled (failed) the
candidate: such a result is counted, never applied.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from gra_local.core import prompts
from gra_local.core.backend import ChatResult
from gra_local.core.candidate import Candidate
from gra_local.core.config import Role
from gra_local.core.engine.calls import Answer, Call, TooLong, ask, free_text, structured
from gra_local.core.engine.waves import StageContext, Steps
from gra_local.core.quality.decision import Reached, Status, adjudicator_keeps
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
)

MAX_SLOT_FAILURES = 2  # a panel slot gets at most two replacement reviewers
MAX_ADJUDICATORS = 2  # adjudicators tried before a contested sample is rejected


def _too_long(cand: Candidate, long: TooLong | None) -> bool:
    """A call the candidate cannot fit in a model's context rejects it `too_long` (no retry
    can shrink the prompt)."""
    if long is not None:
        cand.fail(Reason.TOO_LONG, long.detail)
    return long is not None


# --- generate -----------------------------------------------------------------------


def generate_steps(ctx: StageContext, cand: Candidate) -> Steps:
    """The draft instruction (unless the journal has it), then the answer to it."""
    if cand.failed or cand.response is not None:
        return
    gen = cand.generator
    if cand.draft is None:
        draft: Answer[DraftInstruction] = yield from ask(ctx, structured(
            gen, "generate", Role.GENERATOR, prompts.draft(cand.domain, cand.examples, cand.seed),
            DraftInstruction, cand.call_seed("draft")), cand.tokens)
        if not _too_long(cand, draft.too_long) and draft.value is None:
            cand.fail(Reason.GENERATION_FAILED,
                      f"{gen} wrote no valid instruction ({'; '.join(draft.reasons)})")
        if draft.value is None:
            ctx.snapshot(cand)
            return
        cand.draft = draft.value
        ctx.snapshot(cand)
    sampling = ctx.registry.get(gen).sampling_for(Role.GENERATOR)
    answer: Answer[str] = yield from ask(ctx, Call(
        gen, "generate", Role.GENERATOR, prompts.answer(cand.draft.instruction),
        read=lambda r: free_text(r, sampling.max_tokens),
        seed=lambda retry: cand.call_seed("answer", retry), max_tokens=sampling.max_tokens,
        room=sampling.max_tokens, structured=False, boost=0.0), cand.tokens)
    if answer.value is not None:
        cand.response = answer.value
    elif not _too_long(cand, answer.too_long):
        cand.fail(Reason.GENERATION_FAILED, f"{gen} wrote no answer in two tries "
                  f"({'; '.join(answer.reasons)})")
    ctx.snapshot(cand)


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
    """Phase A for one slot: the reviewer's instruction checks."""
    review = cand.reviews[slot]
    if cand.failed or review.verdict is not None:
        return
    assert cand.draft is not None
    verdict: Answer[InstructionVerdict] = yield from ask(ctx, structured(
        review.model, "review_a", Role.REVIEWER,
        prompts.review_instruction(cand.draft.instruction, cand.seed), InstructionVerdict,
        cand.call_seed("review_a", slot, review.failures), VERDICT_PROBES),
        cand.tokens, wanted=lambda: not cand.failed, heard=partial(_pass_probs, review))
    if _too_long(cand, verdict.too_long) or cand.failed:
        pass  # too long, or another slot of this wave settled it first: not applied
    elif verdict.value is None:
        _slot_failed(ctx, cand, slot, "instruction verdict", verdict.reasons)
    else:
        review.verdict = verdict.value
        settled = ctx.decide(cand, Reached.GENERATED)  # GRA's any-fail veto rejects at once
        if settled.status is Status.REJECT and settled.reason is not None:
            cand.fail(settled.reason, settled.detail)
    ctx.snapshot(cand)


def score_steps(ctx: StageContext, cand: Candidate, slot: int) -> Steps:
    """Phase B for one slot: the reviewer's six scores."""
    review = cand.reviews[slot]
    if cand.failed or review.scores is not None:
        return
    assert cand.draft is not None and cand.response is not None
    got: list[ChatResult] = []
    scores: Answer[Scores] = yield from ask(ctx, structured(
        review.model, "review_b", Role.REVIEWER,
        prompts.review_response(cand.draft.instruction, cand.response, cand.seed), Scores,
        cand.call_seed("review_b", slot, review.failures), SCORE_PROBES),
        cand.tokens, wanted=lambda: not cand.failed, heard=got.append)
    if _too_long(cand, scores.too_long) or cand.failed:
        pass  # too long, or another slot of this wave ran out of reviewers first
    elif scores.value is None:
        _slot_failed(ctx, cand, slot, "scores", scores.reasons)
    else:
        set_scores(review, scores.value, got[-1])
    ctx.snapshot(cand)


def _pass_probs(review: Review, result: ChatResult) -> None:
    review.pass_probs = pass_probabilities(result.text, result.choices)


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


# --- adjudicate -----------------------------------------------------------------------


def adjudicate_steps(ctx: StageContext, cand: Candidate, model: str) -> Steps:
    if cand.failed or cand.adjudication is not None:
        return
    assert cand.draft is not None and cand.response is not None
    scores: Answer[Scores] = yield from ask(ctx, structured(
        model, "adjudicate", Role.ADJUDICATOR,
        prompts.adjudicate(cand.draft.instruction, cand.response, cand.reviews, cand.seed),
        Scores, cand.call_seed("adjudicate", cand.adjudication_tries)), cand.tokens)
    if _too_long(cand, scores.too_long):
        pass  # too long for the adjudicator's context: rejected `too_long`, no other try
    elif scores.value is None:
        cand.adjudication_tries += 1
        if cand.adjudication_tries >= MAX_ADJUDICATORS:
            cand.fail(Reason.ADJUDICATION_FAILED, f"no valid adjudication from "
                      f"{cand.adjudication_tries} tries ({'; '.join(scores.reasons)})")
    else:
        score = round(scores.value.mean, 9)
        cand.adjudication = Adjudication(model=model, scores=scores.value, score=score,
                                         kept=adjudicator_keeps(score, ctx.options.tau))
    ctx.snapshot(cand)
