"""Predicted run duration from measured model speeds: a pure function.

Per candidate: a draft and an answer by the generator, a verdict and scores by each of
`panel` reviewers, adjudication for some. Token counts per call are typical figures
measured on the embedded model's runs (run.json tokens / calls); the acceptance rate
decides how many candidates the run needs. The estimate is meant to say "minutes or
hours", not to the second: run.json reports predicted against actual, and a running job
refines it from its own pace (`refined_seconds`, core.engine.estimate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gra_local.core.options import MAX_AUTO_BATCH, RunOptions

# (prompt tokens evaluated after prefix reuse, completion tokens) per call kind.
CALL_TOKENS = {
    "annotate": (120, 60),
    "draft": (150, 80),
    "answer": (60, 220),
    "review_a": (60, 25),
    "review_b": (230, 60),
    "adjudicate": (300, 60),
    "likelihood": (260, 0),  # the answer read after its instruction and after none
}
ADJUDICATED_SHARE = 0.15
ACCEPTANCE = 0.5
"""Share of candidates assumed accepted before any is decided (the engine's own first
guess when it sizes a batch)."""


@dataclass(frozen=True)
class Speed:
    prompt_tokens_per_s: float
    decode_tokens_per_s: float
    load_seconds: float


def _call_seconds(kind: str, speed: Speed) -> float:
    prompt, completion = CALL_TOKENS[kind]
    return prompt / max(speed.prompt_tokens_per_s, 1e-3) + completion / max(speed.decode_tokens_per_s, 1e-3)


def expected_candidates(samples: int, max_attempts: int, acceptance: float = ACCEPTANCE) -> int:
    """Candidates one round generates to keep `samples` at `acceptance`, within the cap."""
    return min(max_attempts, math.ceil(samples / max(acceptance, 0.05)))


def expected_calls(samples: int, max_attempts: int, rounds: int, panel: int, seed_pool: int,
                   canaries: int = 0, batch: int | None = None, acceptance: float = ACCEPTANCE,
                   judge: str = "panel", reviewers: int | None = None) -> dict[str, int]:
    """Calls per stage over the whole run, as the ETA counts them (one function for the
    plan New run shows and the estimate a run prints).

    `annotate` the seed pool; `generate` a draft and an answer per candidate; `canaries`
    canary pairs go into every review batch (of `batch` candidates, default adaptive
    batches of up to MAX_AUTO_BATCH), each pair an original and its corruption. `judge`
    "panel": the panel reviews every candidate and canary (`review_a` and `review_b` one
    per reviewer each) and `adjudicate` takes the disputed share. "evidence" (the default
    judge): the scoring model reads every candidate and canary once (`likelihood`), and
    the panel judges only the canaries, each side asked once of each distinct reviewer
    (`reviewers`: the distinct models, default `panel`), as where the panel is not shown
    informative; where it is, the run makes more panel calls than this says."""
    candidates = rounds * expected_candidates(samples, max_attempts, acceptance)
    batches = math.ceil(candidates / (batch or MAX_AUTO_BATCH)) if candidates else 0
    judged = 2 * canaries * batches
    evidence = judge == "evidence"
    asked = min(panel, reviewers or panel) if evidence else panel
    reviewed = judged * asked + (0 if evidence else candidates * panel)
    calls = {"annotate": seed_pool, "generate": 2 * candidates,
             "review_a": reviewed, "review_b": reviewed}
    if evidence:
        calls["likelihood"] = candidates + judged
    else:
        calls["adjudicate"] = math.ceil(ADJUDICATED_SHARE * candidates)
    return calls


def predict_stages(speeds: dict[str, Speed], samples: int, max_attempts: int, rounds: int,
                   panel: int, seed_pool: int, acceptance: float = ACCEPTANCE,
                   judge: str = "panel", canaries: int = 0,
                   batch: int | None = None) -> dict[str, tuple[int, float]]:
    """(calls, seconds) each stage is expected to take over the whole run: the calls of
    `expected_calls` (the loaded models are the distinct reviewers), every call at the mean
    speed of the pool; `loads` counts model loads."""
    if not speeds:
        raise ValueError("no speeds")
    names = list(speeds)

    def mean_call(kind: str) -> float:
        return sum(_call_seconds(kind, speeds[n]) for n in names) / len(names)

    calls = expected_calls(samples, max_attempts, rounds, panel, seed_pool, canaries, batch,
                           acceptance, judge, reviewers=len(names))
    per_call = {"annotate": mean_call("annotate"),
                "generate": (mean_call("draft") + mean_call("answer")) / 2,
                "review_a": mean_call("review_a"), "review_b": mean_call("review_b"),
                "likelihood": mean_call("likelihood"), "adjudicate": mean_call("adjudicate")}
    stages = {stage: (n, n * per_call[stage]) for stage, n in calls.items()}
    stages["loads"] = (4 * rounds, 4 * rounds * sum(s.load_seconds for s in speeds.values()))
    return stages


def predict_seconds(speeds: dict[str, Speed], samples: int, max_attempts: int, rounds: int,
                    panel: int, seed_pool: int, acceptance: float = ACCEPTANCE,
                    judge: str = "panel", canaries: int = 0, batch: int | None = None) -> float:
    """Seconds for the whole run (the sum of `predict_stages`)."""
    stages = predict_stages(speeds, samples, max_attempts, rounds, panel, seed_pool,
                            acceptance, judge, canaries, batch)
    return math.fsum(seconds for _, seconds in stages.values())


def calls_for(opts: RunOptions, reviewers: int | None = None) -> dict[str, int]:
    """`expected_calls` for a run's options."""
    return expected_calls(opts.samples, opts.attempt_cap, opts.rounds, opts.panel,
                          opts.seed_pool, opts.canaries, opts.batch, judge=opts.judge,
                          reviewers=reviewers)


def stages_for(speeds: dict[str, Speed], opts: RunOptions) -> dict[str, tuple[int, float]]:
    """`predict_stages` for a run's options."""
    return predict_stages(speeds, opts.samples, opts.attempt_cap, opts.rounds, opts.panel,
                          opts.seed_pool, judge=opts.judge, canaries=opts.canaries,
                          batch=opts.batch)


def refined_seconds(stages: dict[str, tuple[int, float]], done: dict[str, int],
                    elapsed: float, floor: float = 0.1) -> float | None:
    """The run's duration from its own pace: the share of the predicted work done so far
    (each stage's predicted seconds × the share of its predicted calls made, capped at 1)
    against the seconds it took; None before `floor` of the work is done."""
    total = math.fsum(seconds for _, seconds in stages.values())
    if total <= 0:
        return None
    worked = math.fsum(seconds * min(1.0, done.get(stage, 0) / calls)
                       for stage, (calls, seconds) in stages.items() if calls)
    share = worked / total
    return None if share < floor else elapsed / share
