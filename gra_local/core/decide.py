"""The τ/δ decision rule (gra-method.md step 3) as a pure function."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

# Means of six integers carry float noise (8.000000000000002); round before comparing so
# that μ exactly τ and σ exactly δ fall on the documented side of the rule.
_PRECISION = 9


class Verdict(str, Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    ADJUDICATE = "adjudicate"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    mean: float
    std: float


def mean_and_std(scores: list[float]) -> tuple[float, float]:
    """Mean and *population* standard deviation, rounded to 9 decimals."""
    if not scores:
        raise ValueError("no scores to decide on")
    n = len(scores)
    mean = math.fsum(scores) / n
    var = math.fsum((s - mean) ** 2 for s in scores) / n
    return round(mean, _PRECISION), round(math.sqrt(var), _PRECISION)


def decide(scores: list[float], tau: float = 8.0, delta: float = 1.5) -> Outcome:
    """μ < τ → reject; μ ≥ τ and σ ≤ δ → accept; μ ≥ τ and σ > δ → adjudicate."""
    mean, std = mean_and_std(scores)
    if mean < tau:
        verdict = Verdict.REJECT
    elif std <= delta:
        verdict = Verdict.ACCEPT
    else:
        verdict = Verdict.ADJUDICATE
    return Outcome(verdict, mean, std)


def adjudicator_keeps(score: float, tau: float = 8.0) -> bool:
    return round(score, _PRECISION) >= tau
