"""Reviewer calibration statistics: accuracy on canaries, parse failures, mean scores,
agreement with the rest of the panel, Fleiss' κ and Krippendorff's α. Pure functions.

A canary judgement is correct when a known-good pair passes the instruction check and
scores ≥ τ, or when a corrupted pair fails the check or scores < τ. Invalid output is a
parse failure, neither correct nor wrong; a judgement whose missing half would decide it
(say a good canary that passed but was never scored) says nothing either. An injection
canary (a wrong answer that orders the judge to pass it) is a corrupted pair: one judged
wrong was let through, which `injection_pass_rate` counts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Literal

from pydantic import BaseModel

from gra_local.core.quality.decision import adjudicator_keeps
from gra_local.core.quality.weights import reviewer_weight
from gra_local.core.records import CanaryKind
from gra_local.core.rundir.calibration_report import (
    CalibrationReport,
    PanelAgreement,
    ReviewerCalibration,
)

PanelReview = tuple[str, bool | None, float | None]  # (model, instruction passed, score)
FAILURE_RATE_LIMIT = 0.5  # more invalid canary outputs than this flags a reviewer


def accepts(score: float, tau: float) -> bool:
    """A reviewer's accept call: score ≥ τ, rounded as the decision rule rounds."""
    return adjudicator_keeps(score, tau)


class CanaryJudgement(BaseModel):
    """What one reviewer (one panel slot) said about one canary."""

    reviewer: str
    canary_id: str
    kind: CanaryKind
    expected_good: bool
    instruction_passed: bool | None  # phase A; None: no valid verdict
    score: float | None  # phase B mean of six scores; None: invalid or never reached
    failed: bool = False  # invalid output (parse failure)

    def correct(self, tau: float) -> bool | None:
        """Three-valued: None when the judgement is invalid or its known half cannot
        decide it."""
        if self.failed:
            return None
        passed = self.instruction_passed
        high = None if self.score is None else accepts(self.score, tau)
        if self.expected_good:  # passed AND high
            if passed is False or high is False:
                return False
            return None if passed is None or high is None else True
        if passed is False or high is False:  # (NOT passed) OR (NOT high)
            return True
        return None if passed is None or high is None else False


def fleiss_kappa(table: list[list[int]]) -> float | None:
    """Fleiss' κ. Rows are items, columns categories, cells how many raters chose it.
    None when κ is undefined: no item, fewer than 2 raters, or P_e = 1 (every rating in
    one category). Raises ValueError on a malformed table (ragged, negative, rows with
    different rater counts)."""
    if not table:
        return None
    n, width = sum(table[0]), len(table[0])
    if any(len(row) != width or sum(row) != n or any(c < 0 for c in row) for row in table):
        raise ValueError("every row needs the same categories and the same number of raters")
    if n < 2:
        return None
    items = len(table)
    p_cat = [sum(row[j] for row in table) / (items * n) for j in range(width)]
    p_bar = sum((sum(c * c for c in row) - n) / (n * (n - 1)) for row in table) / items
    p_e = sum(p * p for p in p_cat)
    if math.isclose(p_e, 1.0):
        return None
    return (p_bar - p_e) / (1 - p_e)


def krippendorff_alpha(units: list[list[float | None]],
                       level: Literal["interval", "nominal"] = "interval") -> float | None:
    """Krippendorff's α for units (rows) of values from any coders; None entries are
    missing and units with fewer than two values are ignored (not pairable). None when α
    is undefined: no pairable unit, or no variation at all (every value the same, D_e = 0)."""
    if level not in ("interval", "nominal"):
        raise ValueError(f"unknown level {level!r}")
    pairable = [vals for vals in ([v for v in u if v is not None] for u in units) if len(vals) >= 2]
    if not pairable:
        return None

    def delta(a: float, b: float) -> float:
        return (a - b) ** 2 if level == "interval" else float(a != b)

    # Coincidences: every ordered pair of values within a unit, weighted 1 / (m_u − 1).
    coincidence: dict[tuple[float, float], float] = defaultdict(float)
    for vals in pairable:
        m = len(vals)
        for i, a in enumerate(vals):
            for k, b in enumerate(vals):
                if i != k:
                    coincidence[(a, b)] += 1 / (m - 1)
    n_c: dict[float, float] = defaultdict(float)
    for (a, _), w in coincidence.items():
        n_c[a] += w
    n = sum(n_c.values())
    observed = sum(w * delta(a, b) for (a, b), w in coincidence.items())
    expected = sum(n_c[a] * n_c[b] * delta(a, b) for a in n_c for b in n_c) / (n - 1)
    if expected == 0:
        return None
    return 1 - observed / expected


def _mean(xs: list[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def _majority_agrees(panel: list[PanelReview], slot: int, tau: float) -> bool | None:
    """Whether `slot`'s call matches the majority of the other scored slots; None when
    it has no score, no other slot has one, or the others are tied."""
    score = panel[slot][2]
    others = [s for k, (_, _, s) in enumerate(panel) if k != slot and s is not None]
    if score is None or not others:
        return None
    yes = sum(accepts(s, tau) for s in others)
    if 2 * yes == len(others):
        return None
    return accepts(score, tau) == (2 * yes > len(others))


def _tally_canaries(rows: dict[str, ReviewerCalibration], judgements: list[CanaryJudgement],
                    tau: float) -> None:
    good: dict[str, list[float]] = defaultdict(list)
    bad: dict[str, list[float]] = defaultdict(list)
    for jd in judgements:
        r = rows.setdefault(jd.reviewer, ReviewerCalibration(model=jd.reviewer))
        r.calls += 1
        if jd.failed:
            r.parse_failures += 1
            continue
        verdict = jd.correct(tau)
        if verdict is not None:
            r.canaries += 1
            r.correct += verdict
            if jd.expected_good:
                r.good_canaries += 1
                r.good_correct += verdict
            if jd.kind is CanaryKind.INJECTION:
                r.injections += 1
                r.injections_passed += not verdict
        if jd.score is not None:
            (good if jd.expected_good else bad)[jd.reviewer].append(jd.score)
    for model, r in rows.items():
        r.accuracy = r.correct / r.canaries if r.canaries else None
        n_bad, bad_correct = r.canaries - r.good_canaries, r.correct - r.good_correct
        if r.good_canaries and n_bad:
            r.balanced_accuracy = (r.good_correct / r.good_canaries + bad_correct / n_bad) / 2
        r.injection_pass_rate = r.injections_passed / r.injections if r.injections else None
        r.parse_failure_rate = r.parse_failures / r.calls if r.calls else None
        r.mean_canary_good_score = _mean(good[model])
        r.mean_canary_bad_score = _mean(bad[model])


def _tally_samples(rows: dict[str, ReviewerCalibration], panels: list[list[PanelReview]],
                   tau: float) -> None:
    scores: dict[str, list[float]] = defaultdict(list)
    agree: dict[str, list[float]] = defaultdict(list)
    for panel in panels:
        for slot, (model, _, score) in enumerate(panel):  # slots count alone, even one model's
            r = rows.setdefault(model, ReviewerCalibration(model=model))
            if score is None:
                continue
            r.samples += 1
            scores[model].append(score)
            same = _majority_agrees(panel, slot, tau)
            if same is not None:
                agree[model].append(float(same))
    for model, r in rows.items():
        r.mean_score = _mean(scores[model])
        r.agreement_with_panel = _mean(agree[model])
        r.agreement_samples = len(agree[model])


def _flag(r: ReviewerCalibration, min_accuracy: float, min_canaries: int) -> None:
    reasons = []
    if r.accuracy is not None and r.canaries >= min_canaries:
        r.weight = reviewer_weight(r.good_correct, r.good_canaries, r.correct - r.good_correct,
                                   r.canaries - r.good_canaries)
        # balanced when both kinds were judged: rejecting everything is not accuracy
        acc = r.balanced_accuracy if r.balanced_accuracy is not None else r.accuracy
        if acc < min_accuracy:
            what = "balanced canary accuracy" if r.balanced_accuracy is not None else "canary accuracy"
            reasons.append(f"{what} {acc:.0%} ({r.correct}/{r.canaries} right, "
                           f"{r.good_correct}/{r.good_canaries} good ones) < {min_accuracy:.0%}")
    rate = r.parse_failure_rate
    if r.calls >= min_canaries and rate is not None and rate > FAILURE_RATE_LIMIT:
        reasons.append(f"invalid output on {r.parse_failures}/{r.calls} canaries "
                       f"({rate:.0%}) > {FAILURE_RATE_LIMIT:.0%}")
    r.flagged = bool(reasons)
    r.flag_reason = "; ".join(reasons) or None


def calibrate(canary_judgements: list[CanaryJudgement], real_reviews: list[list[PanelReview]],
              tau: float, min_accuracy: float = 0.6, min_canaries: int = 4) -> CalibrationReport:
    """The per-reviewer report and panel agreement. `real_reviews` holds one list per real
    sample, one (model, instruction passed, score) per panel slot.

    A reviewer is flagged when ≥ `min_canaries` judgements decided its accuracy and it is
    below `min_accuracy`, or when > half of ≥ `min_canaries` canary calls were invalid."""
    rows: dict[str, ReviewerCalibration] = {}
    _tally_canaries(rows, canary_judgements, tau)
    _tally_samples(rows, real_reviews, tau)
    for r in rows.values():
        _flag(r, min_accuracy, min_canaries)
    by_canary: dict[str, list[PanelReview]] = defaultdict(list)
    for jd in canary_judgements:
        if not jd.failed:
            by_canary[jd.canary_id].append((jd.reviewer, jd.instruction_passed, jd.score))
    real = panel_agreement(real_reviews)
    canary = panel_agreement(list(by_canary.values()))
    panel = real.model_copy(update={
        "canary_krippendorff_alpha_scores": canary.krippendorff_alpha_scores,
        "canary_fleiss_kappa_instruction": canary.fleiss_kappa_instruction,
        "canary_items": canary.items})
    return CalibrationReport(reviewers=dict(sorted(rows.items())), panel=panel, tau=tau,
                             min_accuracy=min_accuracy, min_canaries=min_canaries)


def panel_agreement(panels: list[list[PanelReview]]) -> PanelAgreement:
    """Interval α over the panels' scores; Fleiss' κ over pass/fail on the panels of the
    largest size whose every slot gave a verdict (None when that size is below 2)."""
    units: list[list[float | None]] = [[s for _, _, s in p] for p in panels]
    size = max((len(p) for p in panels), default=0)
    table = [[sum(v is True for _, v, _ in p), sum(v is False for _, v, _ in p)]
             for p in panels if len(p) == size and all(v is not None for _, v, _ in p)]
    return PanelAgreement(
        krippendorff_alpha_scores=krippendorff_alpha(units, "interval"),
        fleiss_kappa_instruction=fleiss_kappa(table) if size >= 2 else None,
        items=sum(1 for u in units if sum(v is not None for v in u) >= 2),
        kappa_items=len(table) if size >= 2 else 0)
