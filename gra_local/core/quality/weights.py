"""Reviewer weights from canary calibration, and the weighted instruction-check veto.

A reviewer's weight is its chance-corrected balanced accuracy on canaries: w = 2·BA − 1,
where BA is the mean of its accuracy on known-good canaries and on corrupted ones, each
smoothed with one correct and one wrong judgement (Laplace), so that a handful of lucky
canaries does not make a reviewer decisive. Balanced, because canaries are mostly
corrupted: a reviewer that rejects everything is right on most canaries, and at chance.
A reviewer at chance (BA ≈ ½) gets the floor W_MIN, a perfect one nears 1. Until a
reviewer has decided `min_canaries` canaries its weight is 1 (trusted, as in GRA).

Scores: μ and σ of the τ/δ rule are weighted by these weights (only their ratios matter
there: a panel of one model is weighted evenly). Vetoes: the instruction check rejects a
sample when the weights of the reviewers that failed it sum to at least VETO_LEVEL, so a
reviewer with w ≥ ½ (BA ≥ ¾) still vetoes alone, as in GRA, while reviewers near chance
need company: three at the floor never reject.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

W_MIN = 0.1
"""The least weight: a reviewer at or below chance still counts a little in the mean (a
panel of such reviewers decides as an unweighted one) but cannot veto alone."""
VETO_LEVEL = 0.5
"""Summed weight of failing verdicts that rejects a sample."""


def balanced_accuracy(good_correct: int, good: int, bad_correct: int, bad: int) -> float:
    """Mean of the smoothed accuracies on good and on corrupted canaries."""
    return ((good_correct + 1) / (good + 2) + (bad_correct + 1) / (bad + 2)) / 2


def reviewer_weight(good_correct: int, good: int, bad_correct: int, bad: int) -> float:
    """2·BA − 1, at least W_MIN; rounded to 6 decimals (weights are written to records)."""
    ba = balanced_accuracy(good_correct, good, bad_correct, bad)
    return round(max(W_MIN, 2 * ba - 1), 6)


@dataclass(frozen=True)
class Veto:
    rejected: bool
    strength: float
    """Summed weight of the reviewers that failed the check."""
    failed: list[tuple[str, float, list[str]]]
    """(reviewer, its weight, the fields it failed) for each failing verdict."""

    @property
    def detail(self) -> str:
        who = "; ".join(f"{m} (weight {w:.2f}) on {', '.join(f)}" for m, w, f in self.failed)
        side = "≥" if self.rejected else "<"
        return f"failed by {who}: summed weight {self.strength:.2f} {side} {VETO_LEVEL}"


def weighted_veto(verdicts: list[tuple[str, float, list[str]]]) -> Veto:
    """`verdicts`: (reviewer, weight, fields failed) per panel slot that gave a verdict
    (fields empty: it passed)."""
    failed = [(m, w, f) for m, w, f in verdicts if f]
    strength = round(math.fsum(w for _, w, _ in failed), 9)
    return Veto(rejected=bool(failed) and strength >= VETO_LEVEL, strength=strength, failed=failed)
