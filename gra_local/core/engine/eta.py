"""Predicted run duration from measured model speeds: a pure function.

Per candidate: a draft and an answer by the generator, a verdict and scores by each of
`panel` reviewers, adjudication for some. Token counts per call are typical figures
measured on the embedded model's runs (run.json tokens / calls); the acceptance rate
decides how many candidates the run needs. The estimate is meant to say "minutes or
hours", not to the second: run.json reports predicted against actual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# (prompt tokens evaluated after prefix reuse, completion tokens) per call kind.
CALL_TOKENS = {
    "annotate": (120, 60),
    "draft": (150, 80),
    "answer": (60, 220),
    "review_a": (60, 25),
    "review_b": (230, 60),
    "adjudicate": (300, 60),
}
ADJUDICATED_SHARE = 0.15


@dataclass(frozen=True)
class Speed:
    prompt_tokens_per_s: float
    decode_tokens_per_s: float
    load_seconds: float


def _call_seconds(kind: str, speed: Speed) -> float:
    prompt, completion = CALL_TOKENS[kind]
    return prompt / max(speed.prompt_tokens_per_s, 1e-3) + completion / max(speed.decode_tokens_per_s, 1e-3)


def predict_seconds(speeds: dict[str, Speed], samples: int, max_attempts: int, rounds: int,
                    panel: int, seed_pool: int, acceptance: float = 0.5) -> float:
    """Seconds for the whole run, with every model's calls at the mean speed of the pool."""
    if not speeds:
        raise ValueError("no speeds")
    names = list(speeds)

    def mean_call(kind: str) -> float:
        return sum(_call_seconds(kind, speeds[n]) for n in names) / len(names)

    candidates = min(max_attempts, math.ceil(samples / max(acceptance, 0.05)))
    per_candidate = (mean_call("draft") + mean_call("answer")
                     + panel * (mean_call("review_a") + mean_call("review_b"))
                     + ADJUDICATED_SHARE * mean_call("adjudicate"))
    loads = sum(s.load_seconds for s in speeds.values()) * 4  # about one load per stage
    return rounds * (candidates * per_candidate + loads) + seed_pool * mean_call("annotate")
