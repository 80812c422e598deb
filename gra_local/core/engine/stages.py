"""The stages of one batch: generate, review phase A, review phase B, adjudicate.

Each stage builds a list of (model, work) tasks and `run_tasks` runs them model by model,
so a model is loaded once per stage however many samples the batch holds. Stages are
idempotent over candidate state: a resumed candidate skips what its journal shows done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from pydantic import BaseModel

from gra_local.core import prompts
from gra_local.core.backend import ChatRequest, Session
from gra_local.core.candidate import Candidate
from gra_local.core.config import Registry, Role, RunOptions
from gra_local.core.decide import adjudicator_keeps
from gra_local.core.engine.model_pool import ModelPool
from gra_local.core.events import EventSink, Generating, StageProgress, StageStarted
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
from gra_local.core.stats import RunStats

MAX_SLOT_FAILURES = 2  # a panel slot gets at most two replacement reviewers
MAX_ADJUDICATORS = 2  # adjudicators tried before a contested sample is rejected

M = TypeVar("M", bound=BaseModel)


class Stopped(Exception):
    """The user asked to stop; raised between two model calls."""


@dataclass
class StageContext:
    options: RunOptions
    registry: Registry
    pool: ModelPool
    stats: RunStats
    emit: EventSink
    stop: threading.Event
    snapshot: Callable[[Candidate], None]
    round: int = 1
    pause: threading.Event | None = None
    """While set, the run holds between two model calls (the TUI's pause)."""
    live_text: bool = False
    """Ask backends for partial text and emit it as Generating events (the TUI's live view)."""

    def checkpoint(self) -> None:
        """Between two calls: wait while paused, stop when asked."""
        while self.pause is not None and self.pause.is_set() and not self.stop.is_set():
            time.sleep(0.05)
        if self.stop.is_set():
            raise Stopped


Task = tuple[str, Callable[[Session], None]]


def run_tasks(ctx: StageContext, stage: str, tasks: list[Task]) -> None:
    """Run tasks grouped by model, the already-loaded model first, order kept per model."""
    if not tasks:
        return
    groups: dict[str, list[Callable[[Session], None]]] = {}
    for model, work in tasks:
        groups.setdefault(model, []).append(work)
    total, done = len(tasks), 0
    ctx.emit(StageStarted(ctx.round, stage, total))
    start = time.perf_counter()
    try:
        for model in ctx.pool.order(list(groups)):
            for work in groups[model]:
                ctx.checkpoint()
                session = ctx.pool.session(model)
                if ctx.live_text and hasattr(session, "on_partial"):
                    session.on_partial = partial(_emit_partial, ctx, model, stage)
                work(session)
                done += 1
                ctx.emit(StageProgress(ctx.round, stage, done, total, model))
    finally:
        ctx.stats.stage(stage).seconds += time.perf_counter() - start


def _emit_partial(ctx: StageContext, model: str, stage: str, text: str) -> None:
    ctx.emit(Generating(model, stage, text))


RETRY_TEMPERATURE_BOOST = 0.4


def ask(ctx: StageContext, session: Session, model: str, stage: str, role: Role,
        messages: list[dict[str, str]], out_type: type[M], tokens: Tokens,
        seed: int) -> tuple[M | None, list[str]]:
    """A grammar-constrained call, validated; one retry; None if both fail.

    The retry re-samples the same messages with a new seed and a hotter temperature
    rather than showing the model its bad reply: on SmolLM2-135M over the 21 example
    seeds (annotate + draft) that took validity from 33/42 to 40/42, where a repair prompt
    fixed none of its failures (scripts/tune_prompts.py); the unchanged prompt also keeps
    llama.cpp's prefix cache warm.
    """
    sampling = ctx.registry.get(model).sampling_for(role)
    reasons: list[str] = []
    for retry in (0, 1):
        temperature = sampling.temperature
        if retry:
            temperature = min(1.0, max(temperature, sampling.temperature + RETRY_TEMPERATURE_BOOST))
        result = session.chat(ChatRequest(
            messages=messages, temperature=temperature, top_p=sampling.top_p,
            max_tokens=token_budget(out_type), repeat_penalty=sampling.repeat_penalty,
            seed=seed + retry, grammar=GRAMMARS[out_type], stream_partials=ctx.live_text))
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


def _draft(ctx: StageContext, cand: Candidate, session: Session) -> None:
    if cand.failed or cand.draft is not None:
        return
    draft, reasons = ask(ctx, session, cand.generator, "generate", Role.GENERATOR,
                         prompts.draft(cand.domain, cand.examples), DraftInstruction,
                         cand.tokens, cand.call_seed("draft"))
    if draft is None:
        cand.fail(Reason.GENERATION_FAILED,
                  f"{cand.generator} wrote no valid instruction ({'; '.join(reasons)})")
    else:
        cand.draft = draft
    ctx.snapshot(cand)


def _answer(ctx: StageContext, cand: Candidate, session: Session) -> None:
    if cand.failed or cand.draft is None or cand.response is not None:
        return
    sampling = ctx.registry.get(cand.generator).sampling_for(Role.GENERATOR)
    messages = prompts.answer(cand.draft.instruction)
    for retry in (0, 1):
        result = session.chat(ChatRequest(
            messages=messages, temperature=sampling.temperature, top_p=sampling.top_p,
            max_tokens=sampling.max_tokens, repeat_penalty=sampling.repeat_penalty,
            seed=cand.call_seed("answer", retry), stream_partials=ctx.live_text))
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


def generate(ctx: StageContext, cands: list[Candidate]) -> None:
    todo = [c for c in cands if not c.failed and c.response is None]
    drafts: list[Task] = [(c.generator, partial(_draft, ctx, c)) for c in todo]
    answers: list[Task] = [(c.generator, partial(_answer, ctx, c)) for c in todo]
    run_tasks(ctx, "generate", drafts + answers)


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


def _verdict(ctx: StageContext, cand: Candidate, slot: int, session: Session) -> None:
    review = cand.reviews[slot]
    if cand.failed or review.verdict is not None:
        return  # any fail from any reviewer already rejected the sample
    assert cand.draft is not None
    verdict, reasons = ask(ctx, session, review.model, "review_a", Role.REVIEWER,
                           prompts.review_instruction(cand.draft.instruction),
                           InstructionVerdict, cand.tokens,
                           cand.call_seed("review_a", slot, review.failures))
    if verdict is None:
        _slot_failed(cand, slot, "instruction verdict", reasons)
    else:
        review.verdict = verdict
        if not verdict.passed and cand.canary is None:  # a canary's whole panel must judge
            failed_on = [k for k, v in verdict.model_dump().items() if v == "fail"]
            cand.fail(Reason.INSTRUCTION_FAILED,
                      f"{review.model} failed the instruction on: {', '.join(failed_on)}")
    ctx.snapshot(cand)


def _score(ctx: StageContext, cand: Candidate, slot: int, session: Session) -> None:
    review = cand.reviews[slot]
    if cand.failed or review.scores is not None:
        return
    assert cand.draft is not None and cand.response is not None
    scores, reasons = ask(ctx, session, review.model, "review_b", Role.REVIEWER,
                          prompts.review_response(cand.draft.instruction, cand.response),
                          Scores, cand.tokens, cand.call_seed("review_b", slot, review.failures))
    if scores is None:
        _slot_failed(cand, slot, "scores", reasons)
    else:
        review.scores = scores
        review.score = round(scores.mean, 9)
    ctx.snapshot(cand)


def _review_passes(ctx: StageContext, stage: str, cands: list[Candidate], done: str,
                   work: Callable[..., None]) -> None:
    """Run the panel; failed slots get a replacement reviewer in the next pass."""
    for _ in range(MAX_SLOT_FAILURES + 1):
        tasks: list[Task] = [
            (rv.model, partial(work, ctx, c, slot))
            for c in cands if not c.failed
            for slot, rv in enumerate(c.reviews) if getattr(rv, done) is None
        ]
        if not tasks:
            return
        run_tasks(ctx, stage, tasks)


def review_instructions(ctx: StageContext, cands: list[Candidate]) -> None:
    ready = [c for c in cands if not c.failed and c.response is not None]
    _review_passes(ctx, "review_a", ready, "verdict", _verdict)


def review_responses(ctx: StageContext, cands: list[Candidate]) -> None:
    ready = [c for c in cands if not c.failed and c.response is not None
             and all(rv.verdict is not None or rv.failures for rv in c.reviews)]
    _review_passes(ctx, "review_b", ready, "scores", _score)


# --- adjudicate -----------------------------------------------------------------------


def _adjudicate_one(ctx: StageContext, cand: Candidate, model: str, session: Session) -> None:
    if cand.failed or cand.adjudication is not None:
        return
    assert cand.draft is not None and cand.response is not None
    scores, reasons = ask(ctx, session, model, "adjudicate", Role.ADJUDICATOR,
                          prompts.adjudicate(cand.draft.instruction, cand.response, cand.reviews),
                          Scores, cand.tokens, cand.call_seed("adjudicate", cand.adjudication_tries))
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


def adjudicate(ctx: StageContext, cands: list[Candidate]) -> None:
    for _ in range(MAX_ADJUDICATORS):
        tasks: list[Task] = []
        for c in cands:
            if c.failed or c.adjudication is not None:
                continue
            model = c.adjudicators[c.adjudication_tries % len(c.adjudicators)]
            tasks.append((model, partial(_adjudicate_one, ctx, c, model)))
        if not tasks:
            return
        run_tasks(ctx, "adjudicate", tasks)
