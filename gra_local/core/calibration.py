"""Reviewer calibration statistics: accuracy on canaries, parse failures, mean score,
agreement with the rest of the panel, Fleiss' κ and Krippendorff's α. Pure functions.

A canary judgement is correct when a known-good pair passes the instruction check and
scores ≥ τ, or when a corrupted pair fails the check or scores < τ. Invalid output is a
parse failure, neither correct nor wrong.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from pydantic import BaseModel, Field

from gra_local.core.canaries import CanaryKind

PanelReview = tuple[str, bool | None, float | None]  # (model, instruction passed, score)


class CanaryJudgement(BaseModel):
    reviewer: str
    canary_id: str
    kind: CanaryKind
    expected_good: bool
    instruction_passed: bool | None  # None: no valid verdict
    score: float | None  # None: phase B invalid or never reached
    failed: bool = False  # invalid output (parse failure)

    def correct(self, tau: float) -> bool | None:
        """None when this judgement says nothing (invalid, or incomplete)."""
        if self.failed:
            return None
        if self.expected_good:
            if self.instruction_passed is False:
                return False
            return None if self.score is None else self.score >= tau
        if self.instruction_passed is False:
            return True
        return None if self.score is None else self.score < tau


class ReviewerCalibration(BaseModel):
    model: str
    canaries: int = 0
    """Canary judgements that said something (valid)."""
    correct: int = 0
    accuracy: float | None = None
    calls: int = 0
    """Canary judgements asked for, invalid ones included."""
    parse_failures: int = 0
    parse_failure_rate: float | None = None
    mean_score: float | None = None
    """On real samples."""
    mean_canary_good_score: float | None = None
    mean_canary_bad_score: float | None = None
    agreement_with_panel: float | None = None
    """Pairwise: of all (this reviewer, other reviewer) pairs scoring the same real sample,
    the share that made the same call (score ≥ τ or not)."""
    samples: int = 0
    flagged: bool = False
    flag_reason: str | None = None
    weight: float = 1.0
    """Canary accuracy once judged on enough canaries, else 1: the weight of this
    reviewer's score in a weighted panel mean."""


class PanelAgreement(BaseModel):
    """Over real samples and canaries alike."""

    krippendorff_alpha_scores: float | None = None
    """Interval α over phase-B scores (1 = perfect, 0 = chance)."""
    fleiss_kappa_instruction: float | None = None
    """κ over phase-A pass/fail, on items whose whole panel gave a verdict."""
    items: int = 0


class CalibrationReport(BaseModel):
    reviewers: dict[str, ReviewerCalibration] = Field(default_factory=dict)
    panel: PanelAgreement = Field(default_factory=PanelAgreement)
    tau: float
    min_accuracy: float
    min_canaries: int


def fleiss_kappa(table: list[list[int]]) -> float | None:
    """Rows are items, columns categories, cells how many raters chose it; every row must
    have the same number of raters (≥ 2). None when κ is undefined."""
    if not table:
        return None
    n, width = sum(table[0]), len(table[0])
    if n < 2 or any(sum(row) != n or len(row) != width for row in table):
        return None
    items = len(table)
    p_cat = [sum(row[j] for row in table) / (items * n) for j in range(len(table[0]))]
    p_items = [(sum(c * c for c in row) - n) / (n * (n - 1)) for row in table]
    p_bar = sum(p_items) / items
    p_e = sum(p * p for p in p_cat)
    if math.isclose(p_e, 1.0):
        return None
    return (p_bar - p_e) / (1 - p_e)


def krippendorff_alpha(units: list[list[float | None]], level: str = "interval") -> float | None:
    """α for units (rows) of values from any coders; None entries are missing. Units with
    fewer than two values are ignored. `level`: "interval" or "nominal"."""
    if level not in ("interval", "nominal"):
        raise ValueError(f"unknown level {level!r}")
    values = [[v for v in u if v is not None] for u in units]
    values = [v for v in values if len(v) >= 2]
    if not values:
        return None

    def delta(a: float, b: float) -> float:
        return (a - b) ** 2 if level == "interval" else float(a != b)

    # Coincidences: each pair of values within a unit, weighted 1 / (m_u − 1).
    coincidence: dict[tuple[float, float], float] = defaultdict(float)
    for vals in values:
        m = len(vals)
        for i, a in enumerate(vals):
            for k, b in enumerate(vals):
                if i != k:
                    coincidence[(a, b)] += 1 / (m - 1)
    n_c: Counter[float] = Counter()
    for (a, _), w in coincidence.items():
        n_c[a] += w
    total = sum(n_c.values())
    if total <= 1:
        return None
    observed = sum(w * delta(a, b) for (a, b), w in coincidence.items())
    expected = sum(n_c[a] * n_c[b] * delta(a, b) for a in n_c for b in n_c) / (total - 1)
    if expected == 0:
        return 1.0 if observed == 0 else None
    return 1 - observed / expected


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def calibrate(judgements: list[CanaryJudgement], panels: list[list[PanelReview]], tau: float,
              min_accuracy: float = 0.6, min_canaries: int = 4) -> CalibrationReport:
    rows: dict[str, ReviewerCalibration] = {}

    def row(model: str) -> ReviewerCalibration:
        return rows.setdefault(model, ReviewerCalibration(model=model))

    good: dict[str, list[float]] = defaultdict(list)
    bad: dict[str, list[float]] = defaultdict(list)
    for jd in judgements:
        r = row(jd.reviewer)
        r.calls += 1
        if jd.failed:
            r.parse_failures += 1
            continue
        verdict = jd.correct(tau)
        if verdict is not None:
            r.canaries += 1
            r.correct += verdict
        if jd.score is not None:
            (good if jd.expected_good else bad)[jd.reviewer].append(jd.score)

    scores: dict[str, list[float]] = defaultdict(list)
    agree: dict[str, list[bool]] = defaultdict(list)
    for panel in panels:
        for i, (model, _, score) in enumerate(panel):
            row(model).samples += score is not None
            if score is None:
                continue
            scores[model].append(score)
            agree[model] += [(score >= tau) == (s >= tau)
                             for k, (_, _, s) in enumerate(panel) if k != i and s is not None]

    for model, r in rows.items():
        r.accuracy = r.correct / r.canaries if r.canaries else None
        r.parse_failure_rate = r.parse_failures / r.calls if r.calls else None
        r.mean_score = _mean(scores[model])
        r.mean_canary_good_score = _mean(good[model])
        r.mean_canary_bad_score = _mean(bad[model])
        r.agreement_with_panel = _mean([float(a) for a in agree[model]])
        if r.accuracy is not None and r.canaries >= min_canaries:
            r.weight = r.accuracy
            if r.accuracy < min_accuracy:
                r.flagged = True
                r.flag_reason = (f"canary accuracy {r.correct}/{r.canaries} "
                                 f"({r.accuracy:.0%}) < {min_accuracy:.0%}")
        if r.calls >= min_canaries and (r.parse_failure_rate or 0) > 0.5:
            r.flagged = True
            reason = f"invalid output on {r.parse_failures}/{r.calls} canaries"
            r.flag_reason = f"{r.flag_reason}; {reason}" if r.flag_reason else reason

    by_canary: dict[str, list[PanelReview]] = defaultdict(list)
    for jd in judgements:
        if not jd.failed:
            by_canary[jd.canary_id].append((jd.reviewer, jd.instruction_passed, jd.score))
    # Canary panels count for agreement too: every slot of a canary gives a verdict,
    # where a real sample's panel stops at the first failed instruction check.
    return CalibrationReport(reviewers=rows, panel=panel_agreement(panels + list(by_canary.values())),
                             tau=tau, min_accuracy=min_accuracy, min_canaries=min_canaries)


def panel_agreement(panels: list[list[PanelReview]]) -> PanelAgreement:
    units = [[s for _, _, s in p] for p in panels]
    alpha = krippendorff_alpha(units, "interval")
    size = max((len(p) for p in panels), default=0)
    table = [[sum(v is True for _, v, _ in p), sum(v is False for _, v, _ in p)]
             for p in panels if len(p) == size and all(v is not None for _, v, _ in p)]
    kappa = fleiss_kappa(table) if size >= 2 else None
    return PanelAgreement(krippendorff_alpha_scores=alpha, fleiss_kappa_instruction=kappa,
                          items=sum(1 for u in units if sum(v is not None for v in u) >= 2))
