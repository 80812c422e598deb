"""Reviewer weights from canary calibration (the decision that uses them, weighted means
and weighted vetoes, is core.quality.decision).

A reviewer's weight is its chance-corrected balanced accuracy on canaries: w = 2·BA − 1,
where BA is the mean of its accuracy on known-good canaries and on corrupted ones, each
smoothed with one correct and one wrong judgement (Laplace), so that a handful of lucky
canaries does not make a reviewer decisive. Balanced, because canaries are mostly
corrupted: a reviewer that rejects everything is right on most canaries, and at chance.
A reviewer at chance (BA ≈ ½) gets the floor W_MIN, a perfect one nears 1. Until a
reviewer has decided `min_canaries` canaries its weight is 1 (trusted, as in GRA).

Scores: μ and σ of the τ/δ rule are weighted by these weights (only their ratios matter
there: a panel of one model is weighted evenly). Vetoes: the instruction check rejects a
sample when the weights of the reviewers that failed it sum to at least decision.VETO_LEVEL, so a
reviewer with w ≥ ½ (BA ≥ ¾) still vetoes alone, as in GRA, while reviewers near chance
need company: three at the floor never reject.
"""

from __future__ import annotations

W_MIN = 0.1
"""The least weight: a reviewer at or below chance still counts a little in the mean (a
panel of such reviewers decides as an unweighted one) but cannot veto alone."""


def balanced_accuracy(good_correct: int, good: int, bad_correct: int, bad: int) -> float:
    """Mean of the smoothed accuracies on good and on corrupted canaries."""
    return ((good_correct + 1) / (good + 2) + (bad_correct + 1) / (bad + 2)) / 2


def reviewer_weight(good_correct: int, good: int, bad_correct: int, bad: int) -> float:
    """2·BA − 1, at least W_MIN; rounded to 6 decimals (weights are written to records)."""
    ba = balanced_accuracy(good_correct, good, bad_correct, bad)
    return round(max(W_MIN, 2 * ba - 1), 6)


def pairwise_weight(wins: float, pairs: int) -> float:
    """The same from a pairwise record on canary pairs (review mode, where the originals
    are the input's own pairs and cannot be trusted as good): 2·A − 1 with A = (wins + 1)
    / (pairs + 2), at least W_MIN. A reviewer that rejects a bad input pair is not counted
    wrong for it; only ranking a corruption above what it was made from counts."""
    return round(max(W_MIN, 2 * (wins + 1) / (pairs + 2) - 1), 6)
