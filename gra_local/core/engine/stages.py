"""The stages of a round, each a function of the batch's live candidates that adds
evidence to them: generate, relevance, likelihood, instruction checks (phase A), scores
(phase B), adjudication. A stage never decides (core.quality.decision does); the pipeline
(pipeline.py) runs them in order and settles what the evidence decides after each.

A model-calling stage builds one task per candidate (per panel slot in review) and
`run_tasks` runs them model by model, each model's calls in waves (waves.py), so a model
is loaded once per stage however many samples the batch holds. Stages are idempotent over
candidate state: a resumed candidate skips what its journal shows done.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gra_local.core import prompts
from gra_local.core.backend import Scorer
from gra_local.core.candidate import Candidate
from gra_local.core.engine import confidence
from gra_local.core.engine.steps import (
    MAX_ADJUDICATORS,
    MAX_SLOT_FAILURES,
    adjudicate_steps,
    generate_calls,
    generate_steps,
    score_steps,
    verdict_steps,
)
from gra_local.core.engine.waves import StageContext, Steps, Stopped, Task, run_tasks
from gra_local.core.errors import WorkerLost
from gra_local.core.events import StageProgress, StageStarted
from gra_local.core.quality import likelihood as lk
from gra_local.core.quality.relevance import Relevance
from gra_local.core.records import RelevanceScore, Review


def generate(ctx: StageContext, cands: list[Candidate]) -> None:
    """Draft and answer for each candidate that has none (given pairs and canaries have)."""
    todo = [c for c in cands if not c.failed and not c.faulted and c.response is None]
    run_tasks(ctx, "generate", [Task(c.generator, generate_steps(ctx, c), generate_calls(c), cand=c)
                                for c in todo])


def relevance(cands: list[Candidate], check: Relevance | None) -> None:
    """cosine(instruction, response) of every answer, before any review call (no model call:
    the sentence embedder); None: the check is off for the run."""
    if check is None or check.threshold is None:
        return
    todo = [c for c in cands if not c.failed and c.response is not None and c.draft is not None]
    scores = check.cosines([(c.draft.instruction, c.response or "") for c in todo
                            if c.draft is not None])
    for cand, cosine in zip(todo, scores, strict=True):
        cand.relevance = RelevanceScore(cosine=cosine, threshold=check.threshold)


def likelihood(ctx: StageContext, cands: list[Candidate], scorer: str | None) -> None:
    """The scoring model reads each answer (core.quality.likelihood): one forward pass per
    pair, no sampling. A model that cannot score (a server) or a pair with nothing to score
    leaves the candidate without this evidence; the decision does without it. A lost worker
    is a fault, not missing evidence: the pairs are read again by a fresh one."""
    todo = [c for c in cands if not c.failed and c.response is not None and c.draft is not None
            and c.likelihood is None]
    if scorer is None or not todo or ctx.pool.dropped(scorer):
        return
    ctx.checkpoint()
    ctx.emit(StageStarted(ctx.round, "likelihood", len(todo)))
    start = time.perf_counter()
    requests = [lk.request(prompts.answer(c.draft.instruction), c.response or "")
                for c in todo if c.draft is not None]
    try:
        while True:  # a lost worker is a fault: the same pairs again, on a fresh one
            try:
                session = ctx.pool.session(scorer)
                if not isinstance(session, Scorer):
                    return
                read = _Read(ctx, scorer, len(todo))
                if hasattr(session, "on_result"):
                    session.on_result = read.result
                try:
                    results = session.score_many(requests, cancel=ctx.stop)
                finally:
                    if hasattr(session, "on_result"):
                        session.on_result = None
                break
            except WorkerLost as exc:
                if ctx.stop.is_set():
                    raise Stopped from None
                ctx.pool.lost(scorer, exc)
                if ctx.pool.dropped(scorer):  # lost once too often: left for a rerun, as waves._leave
                    for cand in todo:
                        cand.faulted = f"model {scorer!r} was dropped ({ctx.pool.drop_reason(scorer)})"
                    return
    finally:
        ctx.stats.stage("likelihood").seconds += time.perf_counter() - start
    if any(r.finish_reason == "cancelled" for r in results):
        raise Stopped  # nothing applied: a resume scores them again
    for cand, result in zip(todo, results, strict=True):
        cand.likelihood = lk.signals(scorer, result)
        if (why := lk.shortfall(result)) is not None:
            ctx.stats.unscored[why] = ctx.stats.unscored.get(why, 0) + 1
        ctx.stats.stage("likelihood").calls += 1
        ctx.snapshot(cand)
    ctx.emit(StageProgress(ctx.round, "likelihood", len(todo), len(todo), scorer))


class _Read:
    """The likelihood stage's progress, as each pair's reading comes back."""

    def __init__(self, ctx: StageContext, scorer: str, total: int) -> None:
        self.ctx, self.scorer, self.total = ctx, scorer, total
        self.done = self.tokens = 0

    def result(self, _index: int, tokens: int) -> None:
        self.done, self.tokens = min(self.done + 1, self.total), self.tokens + tokens
        self.ctx.emit(StageProgress(self.ctx.round, "likelihood", self.done, self.total,
                                    self.scorer, self.tokens))


Needs = Callable[[Review], bool]
Slots = Callable[[Candidate], list[int]]


def _passes(ctx: StageContext, stage: str, cands: list[Candidate], needs: Needs,
            steps: Callable[[StageContext, Candidate, int], Steps], slots: Slots | None = None) -> None:
    """Ask every slot that `needs` asking (`slots`: only these of each candidate); a failed
    slot gets a replacement reviewer, asked in the next pass."""
    for _ in range(MAX_SLOT_FAILURES + 1):
        tasks = [Task(rv.model, steps(ctx, c, slot), cand=c)
                 for c in cands if not c.failed and not c.faulted
                 for slot, rv in enumerate(c.reviews)
                 if needs(rv) and (slots is None or slot in slots(c))]
        if not tasks:
            return
        run_tasks(ctx, stage, tasks)


def _needs_verdict(rv: Review) -> bool:
    return rv.verdict is None and not rv.skipped and not rv.extra  # extra slots: phase B only


def _needs_scores(rv: Review) -> bool:
    return rv.scores is None and not rv.skipped


def instruction_checks(ctx: StageContext, cands: list[Candidate]) -> None:
    """Phase A: the panel's pass/fail checks of each instruction."""
    ready = [c for c in cands if not c.failed and c.response is not None]
    _passes(ctx, "review_a", ready, _needs_verdict, verdict_steps)


def _first_slots(cand: Candidate) -> list[int]:
    """The slots asked in routing's first pass: the first ones where the panel's replies
    carry probabilities (their phase-A verdicts did) and the candidate is a sample, else
    all (one pass, no extra wave)."""
    if cand.canary is None and all(rv.pass_probs is not None
                                   for rv in cand.reviews[:confidence.FIRST_SLOTS]):
        return confidence.first_slots(cand)
    return list(range(len(cand.reviews)))


def scores(ctx: StageContext, cands: list[Candidate], sure: confidence.Routing | None) -> None:
    """Phase B: the panel's six scores. With routing (`sure`: how the decision reads a
    panel), the first slots first, the rest only where they are not sure, then one extra
    reviewer where the panel is unsure (confidence.py); canaries get their whole panel."""
    ready = [c for c in cands if not c.failed and c.response is not None
             and all(rv.verdict is not None or rv.failures or rv.extra for rv in c.reviews)]
    if sure is None:
        _passes(ctx, "review_b", ready, _needs_scores, score_steps)
        return
    _passes(ctx, "review_b", ready, _needs_scores, score_steps, slots=_first_slots)
    for cand in ready:
        if cand.failed or not sure.stops_early(cand):
            continue
        first = confidence.first_slots(cand)
        rest = [rv for slot, rv in enumerate(cand.reviews)
                if slot not in first and rv.scores is None and not rv.skipped]
        for rv in rest:
            rv.skipped = True
        if rest:
            ctx.stats.routing.stopped_early += len(rest)
            ctx.snapshot(cand)
    _passes(ctx, "review_b", ready, _needs_scores, score_steps)
    for cand in ready:
        if cand.failed or not sure.wants_extra(cand):
            continue
        model = confidence.extra_reviewer(cand, ctx.pool.usable(cand.replacements))
        if model is not None:
            cand.reviews.append(Review(model=model, extra=True))
            ctx.stats.routing.extra_reviewers += 1
            ctx.snapshot(cand)
    _passes(ctx, "review_b", ready, _needs_scores, score_steps)


def adjudicate(ctx: StageContext, cands: list[Candidate]) -> None:
    """The contested, each to an adjudicator; an invalid reply passes it to the next."""
    for _ in range(MAX_ADJUDICATORS):
        tasks = []
        for c in cands:
            if c.failed or c.faulted or c.adjudication is not None:
                continue
            model = c.adjudicators[c.adjudication_tries % len(c.adjudicators)]
            tasks.append(Task(model, adjudicate_steps(ctx, c, model), cand=c))
        if not tasks:
            return
        run_tasks(ctx, "adjudicate", tasks)
