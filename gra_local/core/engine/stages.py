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
                   steps: Callable[[StageContext, Candidate, int], Steps]) -> None:
    """Run the panel; failed slots get a replacement reviewer in the next pass."""
    for _ in range(MAX_SLOT_FAILURES + 1):
        tasks = [Task(rv.model, steps(ctx, c, slot))
                 for c in cands if not c.failed
                 for slot, rv in enumerate(c.reviews) if getattr(rv, done) is None]
        if not tasks:
            return
        run_tasks(ctx, stage, tasks)


def review_instructions(ctx: StageContext, cands: list[Candidate]) -> None:
    ready = [c for c in cands if not c.failed and c.response is not None]
    _review_passes(ctx, "review_a", ready, "verdict", verdict_steps)


def review_responses(ctx: StageContext, cands: list[Candidate]) -> None:
    ready = [c for c in cands if not c.failed and c.response is not None
             and all(rv.verdict is not None or rv.failures for rv in c.reviews)]
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
