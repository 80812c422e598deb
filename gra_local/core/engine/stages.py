"""The stages of one batch: generate, review phase A, review phase B, adjudicate.

Each stage builds a list of tasks, one step generator per candidate (per panel slot in
review), and `run_tasks` runs them model by model, each model's calls in waves (see
waves.py), so a model is loaded once per stage however many samples the batch holds.
Stages are idempotent over candidate state: a resumed candidate skips what its journal
shows done.
"""

from __future__ import annotations

from collections.abc import Callable

from gra_local.core.candidate import Candidate
from gra_local.core.engine import confidence
from gra_local.core.engine.steps import (
    MAX_ADJUDICATORS,
    MAX_SLOT_FAILURES,
    RETRY_TEMPERATURE_BOOST,
    adjudicate_steps,
    ask_steps,
    generate_calls,
    generate_steps,
    score_steps,
    verdict_steps,
)
from gra_local.core.engine.waves import StageContext, Steps, Stopped, Task, run_tasks
from gra_local.core.records import Review

__all__ = [
    "MAX_ADJUDICATORS", "MAX_SLOT_FAILURES", "RETRY_TEMPERATURE_BOOST", "StageContext",
    "Stopped", "Task", "adjudicate", "ask_steps", "generate", "review_instructions",
    "review_responses", "run_tasks",
]


def generate(ctx: StageContext, cands: list[Candidate]) -> None:
    todo = [c for c in cands if not c.failed and c.response is None]
    run_tasks(ctx, "generate", [Task(c.generator, generate_steps(ctx, c), generate_calls(c))
                                for c in todo])


def _review_passes(ctx: StageContext, stage: str, cands: list[Candidate], done: str,
                   steps: Callable[[StageContext, Candidate, int], Steps],
                   slots: Callable[[Candidate], list[int]] | None = None) -> None:
    """Run the panel (`slots`: only these of each); failed slots get a replacement
    reviewer in the next pass. Skipped slots and, in phase A, extra ones are not asked."""
    for _ in range(MAX_SLOT_FAILURES + 1):
        tasks = [Task(rv.model, steps(ctx, c, slot))
                 for c in cands if not c.failed
                 for slot, rv in enumerate(c.reviews)
                 if getattr(rv, done) is None and not rv.skipped
                 and not (rv.extra and done == "verdict")
                 and (slots is None or slot in slots(c))]
        if not tasks:
            return
        run_tasks(ctx, stage, tasks)


def review_instructions(ctx: StageContext, cands: list[Candidate]) -> None:
    ready = [c for c in cands if not c.failed and c.response is not None]
    _review_passes(ctx, "review_a", ready, "verdict", verdict_steps)


def _first_slots(cand: Candidate) -> list[int]:
    """The slots asked in routing's first pass: the first ones where the panel's replies
    carry probabilities (their phase-A verdicts did), else all (one pass, no extra wave)."""
    if all(rv.pass_probs is not None for rv in cand.reviews[:confidence.FIRST_SLOTS]):
        return confidence.first_slots(cand)
    return list(range(len(cand.reviews)))


def review_responses(ctx: StageContext, cands: list[Candidate],
                     weights: Callable[[list[str]], list[float] | None] | None = None) -> None:
    """Phase B. With `weights` (routing on): the first slots first, the rest only where
    they are not sure, then one extra reviewer where the panel is unsure (confidence.py)."""
    ready = [c for c in cands if not c.failed and c.response is not None
             and all(rv.verdict is not None or rv.failures or rv.extra for rv in c.reviews)]
    if weights is None:
        _review_passes(ctx, "review_b", ready, "scores", score_steps)
        return
    tau = ctx.options.tau
    _review_passes(ctx, "review_b", ready, "scores", score_steps, slots=_first_slots)
    for cand in ready:
        if cand.failed or not confidence.stops_early(cand, tau):
            continue
        first = confidence.first_slots(cand)
        rest = [rv for slot, rv in enumerate(cand.reviews)
                if slot not in first and rv.scores is None and not rv.skipped]
        for rv in rest:
            rv.skipped = True
        if rest:
            ctx.stats.routing.stopped_early += len(rest)
            ctx.snapshot(cand)
    _review_passes(ctx, "review_b", ready, "scores", score_steps)
    for cand in ready:
        if cand.failed:
            continue
        scored = [rv.model for rv in cand.reviews if rv.score is not None]
        if confidence.wants_extra(cand, tau, ctx.options.delta, weights(scored)):
            model = confidence.extra_reviewer(cand, ctx.pool.usable(cand.replacements))
            if model is not None:
                cand.reviews.append(Review(model=model, extra=True))
                ctx.stats.routing.extra_reviewers += 1
                ctx.snapshot(cand)
    _review_passes(ctx, "review_b", ready, "scores", score_steps)


def adjudicate(ctx: StageContext, cands: list[Candidate]) -> None:
    for _ in range(MAX_ADJUDICATORS):
        tasks = []
        for c in cands:
            if c.failed or c.adjudication is not None:
                continue
            model = c.adjudicators[c.adjudication_tries % len(c.adjudicators)]
            tasks.append(Task(model, adjudicate_steps(ctx, c, model)))
        if not tasks:
            return
        run_tasks(ctx, "adjudicate", tasks)
