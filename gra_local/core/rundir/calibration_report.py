"""Reviewer calibration figures as run.json holds them. The data model lives here, below
core.quality, which computes it, so that the run directory's reader (rundir.report) can
type run.json's calibration section without importing the quality layer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ReviewerCalibration(BaseModel):
    """One reviewer's figures: on canaries (accuracy, injections let through, parse
    failures) and on real samples (mean score, agreement with the rest of the panel), and
    whether it was flagged."""

    model: str
    canaries: int = 0
    """Canary judgements that decided correct or wrong."""
    correct: int = 0
    accuracy: float | None = None
    """correct / canaries; None without any deciding canary judgement."""
    good_canaries: int = 0
    """Of `canaries`, the known-good ones."""
    good_correct: int = 0
    balanced_accuracy: float | None = None
    """Mean of the accuracy on good canaries and on corrupted ones (None until both were
    judged): what flags use, since a reviewer that rejects everything is right on most
    canaries."""
    calls: int = 0
    """Canary judgements asked for, invalid ones included."""
    parse_failures: int = 0
    """Invalid canary outputs. Real samples' reviews carry no failure mark here: a slot
    that never answered may simply have been stopped by another reviewer's fail."""
    parse_failure_rate: float | None = None
    mean_score: float | None = None
    """Mean phase-B score on real samples."""
    mean_canary_good_score: float | None = None
    mean_canary_bad_score: float | None = None
    injections: int = 0
    """Injection canaries (wrong answers telling the judge to pass them, or forged review
    blocks) whose judgement decided: failed or scored below τ, or passed with score ≥ τ."""
    injections_passed: int = 0
    """Of those, the ones this reviewer let through: passed the check and scored ≥ τ."""
    injection_pass_rate: float | None = None
    """injections_passed / injections; None when it decided no injection canary. Above 0:
    the text under review can steer this reviewer."""
    samples: int = 0
    """Real-sample panel slots this reviewer scored."""
    agreement_with_panel: float | None = None
    """Share of scored real-sample slots where this reviewer's accept call (score ≥ τ)
    matches the majority call of the other slots' scores; slots whose others are tied or
    absent are left out (`agreement_samples` counts the rest). None when none is left."""
    agreement_samples: int = 0
    flagged: bool = False
    flag_reason: str | None = None
    weight: float = 1.0
    """Once judged on ≥ min_canaries canaries, 2 × its smoothed balanced accuracy − 1, at
    least 0.1 (core.quality.weights), else 1: this reviewer's weight in the panel's mean and
    in its vetoes when the run weights reviewers."""


class PanelAgreement(BaseModel):
    """Agreement over real samples; the canary_ figures are the same over canaries, whose
    whole panel always judges (a real sample's panel stops at the first failed check, so
    its full-panel items lean towards all-pass)."""

    krippendorff_alpha_scores: float | None = None
    """Interval α over phase-B scores (1 = perfect, 0 = chance); None when undefined."""
    fleiss_kappa_instruction: float | None = None
    """κ over phase-A pass/fail, on items whose full panel gave a verdict."""
    items: int = 0
    """Real samples with ≥ 2 scores (the units of α)."""
    kappa_items: int = 0
    canary_krippendorff_alpha_scores: float | None = None
    canary_fleiss_kappa_instruction: float | None = None
    canary_items: int = 0


class CalibrationReport(BaseModel):
    """What core.quality.calibration computes; run.json holds its fields after the canary
    settings (CalibrationSection)."""

    reviewers: dict[str, ReviewerCalibration] = Field(default_factory=dict)
    panel: PanelAgreement = Field(default_factory=PanelAgreement)
    tau: float
    min_accuracy: float
    min_canaries: int
    relevance: ReviewerCalibration | None = None
    """The relevance check's canary judgements, as a reviewer's (never weighted or
    flagged: it only vetoes, before the panel)."""

    def flagged(self) -> set[str]:
        return {m for m, r in self.reviewers.items() if r.flagged}

    def weights(self) -> dict[str, float]:
        return {m: r.weight for m, r in self.reviewers.items()}


class KindDiscrimination(BaseModel):
    pairs: int = 0
    accuracy: float | None = None
    p_better: float | None = None


class Discrimination(BaseModel):
    """How well one piece of evidence tells an original from its corruption, on the run's
    canary pairs (core.quality.discrimination): no trust in the original is needed."""

    pairs: int = 0
    """Canary pairs where the piece had a value for both."""
    accuracy: float | None = None
    """Share of those pairs where it ranked the original above the corruption (a tie: ½)."""
    p_better: float | None = None
    """Posterior probability that its pairwise accuracy exceeds ½ (Beta(1 + wins,
    1 + losses), a tie half each): near ½ it is at chance, near 1 it tells them apart."""
    by_kind: dict[str, KindDiscrimination] = Field(default_factory=dict)
    """The same per corruption kind."""
    standing: str | None = None
    """`informative` (it may decide), `unsettled` (too few pairs to say) or `at_chance`
    (core.quality.standing); None in runs made before standings existed."""
    threshold: float | None = None
    """Where a likelihood signal decides: values below this reject (set on the canaries)."""


class CalibrationSection(BaseModel):
    """Reviewer calibration: the canary settings, then core.quality's CalibrationReport
    (whose fields follow, flattened, in its order). Agreement figures need no canaries."""

    canaries_per_batch: int
    """--canaries: canary items mixed into each review batch (0: none)."""
    canaries_judged: int
    action: Literal["flag", "weight", "drop"] | None
    """What failing canaries did to a reviewer; None without canaries."""
    reviewers: dict[str, ReviewerCalibration] = Field(default_factory=dict)
    """Per reviewer: canary accuracy, injection pass rate, parse failures, mean scores,
    agreement, flag."""
    panel: PanelAgreement = Field(default_factory=PanelAgreement)
    """Panel-wide Krippendorff's α (scores) and Fleiss' κ (instruction checks)."""
    tau: float
    min_accuracy: float
    """Canary accuracy below which a reviewer is flagged."""
    min_canaries: int
    """Canaries a reviewer must have judged before its accuracy counts."""
    relevance: ReviewerCalibration | None = None
    """The relevance check judged like a reviewer: a good canary above its threshold, a
    corrupted one below, is right (`accuracy`); None when the check is off or no canary ran."""
    evidence: dict[str, Discrimination] = Field(default_factory=dict)
    """Per piece of evidence (each reviewer's scores and checks, relevance, each likelihood
    signal): how often it ranked a canary's original above its corruption, its standing,
    and a likelihood check's threshold."""
    judge: Literal["evidence", "panel"] | None = None
    """--judge; None without canaries (the panel decides by the paper's rule)."""
    decided_by: str = ""
    """What decides samples now, in words (core.quality.evidence.Evidence.summary)."""
    panel_not_asked: int = 0
    """Panel slots never asked about a sample the cheap evidence decided (evidence_accept,
    evidence_reject) or left unverified: calls saved (two a slot at least: checks and
    scores)."""
