"""The τ/δ decision rule (docs/method.md, "One round", step 4) as a pure function."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from gra_local.core.config import RunOptions

# τ and δ when a caller gives none (tests, scripts): RunOptions' defaults, written there once.
_TAU: float = RunOptions.model_fields["tau"].default
_DELTA: float = RunOptions.model_fields["delta"].default

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


def weighted_mean_and_std(scores: list[float], weights: list[float]) -> tuple[float, float]:
    """Weighted mean and weighted population standard deviation; all-zero weights count
    every score alike (a panel of reviewers that all failed their canaries still decides)."""
    if len(weights) != len(scores):
        raise ValueError("one weight per score")
    if any(w < 0 for w in weights):
        raise ValueError("weights must be ≥ 0")
    total = math.fsum(weights)
    if total <= 0:
        return mean_and_std(scores)
    mean = math.fsum(w * s for w, s in zip(weights, scores, strict=True)) / total
    var = math.fsum(w * (s - mean) ** 2 for w, s in zip(weights, scores, strict=True)) / total
    return round(mean, _PRECISION), round(math.sqrt(var), _PRECISION)


def decide(scores: list[float], tau: float = _TAU, delta: float = _DELTA,
           weights: list[float] | None = None) -> Outcome:
    """μ < τ → reject; μ ≥ τ and σ ≤ δ → accept; μ ≥ τ and σ > δ → adjudicate.

    With `weights` (reviewer calibration), μ and σ are weighted."""
    if weights is None:
        mean, std = mean_and_std(scores)
    else:
        mean, std = weighted_mean_and_std(scores, weights)
    if mean < tau:
        verdict = Verdict.REJECT
    elif std <= delta:
        verdict = Verdict.ACCEPT
    else:
        verdict = Verdict.ADJUDICATE
    return Outcome(verdict, mean, std)


def adjudicator_keeps(score: float, tau: float = _TAU) -> bool:
    return round(score, _PRECISION) >= tau
