"""Confidence routing: ask fewer reviewers where the first ones are sure, one more where
the panel is unsure, before any adjudicator.

A reviewer's confidence is its own: P(accept), the probability under its score
distributions (core.quality.expected) that its mean score reaches τ. It is sure when that
is at least SURE or at most 1 − SURE. Rules, for a real sample (canaries always get their
whole panel):

- **Stop early**: the panel's first FIRST_SLOTS reviewers scored first; when they are all
  sure the same way, the other slots are not asked (`Review.skipped`; calls saved).
- **One more reviewer**: after the whole panel, a sample the τ/δ rule would send to the
  adjudicator (σ > δ), or whose reviewers are unsure on average (mean P(accept) within
  UNSURE of ½), gets one extra reviewer, a model not yet on its panel where there is one
  (`Review.extra`; calls added). Then the rule decides, adjudicator included.

A reviewer whose reply carried no probabilities (a server that shows none) is never sure:
without distributions the panel is asked in full and no reviewer is added.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from gra_local.core.candidate import Candidate
from gra_local.core.quality.decision import Calibration, Rule, Verdict, panel_outcome
from gra_local.core.quality.expected import ScoreDistribution, accept_probability
from gra_local.core.records import Review

SURE = 0.9
FIRST_SLOTS = 2
UNSURE = 0.25


def p_accept(review: Review, tau: float) -> float | None:
    """P(this reviewer's mean score ≥ τ); None without score distributions."""
    if review.score_probs is None:
        return None
    dists = {f: ScoreDistribution({int(k): p for k, p in probs.items()})
             for f, probs in review.score_probs.items()}
    return accept_probability(dists, tau)


def first_slots(cand: Candidate) -> list[int]:
    """The slots scored before the rest are considered (all of them on a small panel)."""
    return list(range(len(cand.reviews))) if len(cand.reviews) <= FIRST_SLOTS \
        else list(range(FIRST_SLOTS))


@dataclass(frozen=True)
class Routing:
    """Routing under the run's decision rule and its current calibration."""

    rule: Rule
    calibration: Callable[[], Calibration]

    def stops_early(self, cand: Candidate) -> bool:
        """The first slots were all scored, all sure, all the same way."""
        if cand.canary is not None or len(cand.reviews) <= FIRST_SLOTS:
            return False
        probs = [p_accept(cand.reviews[s], self.rule.tau) for s in first_slots(cand)]
        if any(p is None for p in probs):
            return False
        sure_yes = all(p is not None and p >= SURE for p in probs)
        sure_no = all(p is not None and p <= 1 - SURE for p in probs)
        return sure_yes or sure_no

    def wants_extra(self, cand: Candidate) -> bool:
        """Whether the whole panel leaves the sample uncertain enough to ask one more: the
        decision would contest it, or its reviewers are unsure on average."""
        if cand.canary is not None or any(rv.extra for rv in cand.reviews):
            return False
        scored = [rv for rv in cand.reviews if rv.score is not None]
        probs = [p_accept(rv, self.rule.tau) for rv in scored]
        if not scored or any(p is None for p in probs):
            return False
        outcome = panel_outcome(cand, self.rule, self.calibration())
        mean_p = math.fsum(p for p in probs if p is not None) / len(probs)
        return outcome.verdict is Verdict.ADJUDICATE or abs(mean_p - 0.5) < UNSURE


def extra_reviewer(cand: Candidate, usable: list[str]) -> str | None:
    """A model for the extra slot: one not on the panel (nor the generator) first, else
    the panel's own model that reviewed least; None when no reviewer is usable."""
    if not usable:
        return None
    on_panel = [rv.model for rv in cand.reviews]
    fresh = [m for m in usable if m not in on_panel and m != cand.generator]
    if fresh:
        return fresh[0]
    return min(usable, key=lambda m: (on_panel.count(m), m))
