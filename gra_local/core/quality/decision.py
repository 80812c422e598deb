"""Every decision of a run, in one place: `decide` maps a candidate's evidence and the
run's calibration to accept, reject, contested or "not yet". Nothing else in the engine
decides; stages only gather evidence (docs/method.md, "One round").

The evidence, in the order a round gathers it, and what each can decide:

1. **A failure** a stage recorded (`Candidate.failed`: no valid draft or answer, a prompt
   too long for a context, no valid review after the replacements, no valid adjudication):
   rejected with that reason.
2. **Relevance** (`Candidate.relevance`, core.quality.relevance): a cosine below the run's
   threshold is rejected `off_topic` before any review call.
3. **Instruction checks** (phase A). GRA's any-fail veto: one failing verdict rejects, as
   soon as it is given (the rest of the panel is then not asked). When the run weighs its
   reviewers (`Calibration.weighs_vetoes`), the failing reviewers' weights are summed once
   the whole panel has answered, and reject at VETO_LEVEL (a reviewer with w ≥ ½ still
   vetoes alone; three at chance never do).
4. **Scores** (phase B), the τ/δ rule on the (weighted) mean μ and spread σ of the panel's
   scores: μ < τ rejects `low_score`; μ ≥ τ and σ ≤ δ accepts; μ ≥ τ and σ > δ is contested.
5. **The adjudicator**, for the contested: its score ≥ τ keeps the sample.

With canaries, what decides is measured (`Calibration.evidence`, core.quality.evidence):
an equation the answer writes out that does not hold (core.quality.arithmetic; unless the
canary pairs set that check aside) and an informative likelihood signal below its
threshold reject `evidence_reject` from the start (2.); the panel (3.–5.) decides only where it is informative. Where it is not, a
sample that passed every informative cheap check is accepted `evidence_accept`, its
detail saying that correctness was not checked, and where nothing is informative it is
`unverified` (the round holds it for later canaries, and keeps it so if the run ends).

Canaries are never decided: their outcomes are the calibration the next decisions read.
Which evidence is complete is the round's to say (`Reached`): the same partial evidence
means "wait" in the middle of a stage and "decide" after it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Literal

from gra_local.core.candidate import Candidate
from gra_local.core.options import RunOptions
from gra_local.core.quality import arithmetic
from gra_local.core.quality.discrimination import piece_values
from gra_local.core.quality.evidence import Evidence
from gra_local.core.quality.relevance import vetoes as relevance_vetoes
from gra_local.core.records import Reason, Review

# τ and δ when a caller gives none (tests, scripts): RunOptions' defaults, written there once.
_TAU: float = RunOptions.model_fields["tau"].default
_DELTA: float = RunOptions.model_fields["delta"].default

# Means of six integers carry float noise (8.000000000000002); round before comparing so
# that μ exactly τ and σ exactly δ fall on the documented side of the rule.
_PRECISION = 9

VETO_LEVEL = 0.5
"""Summed weight of failing verdicts that rejects a sample (weighted vetoes)."""
WRONG_SUMS_MARGIN = -1.0
"""The decision score of an answer whose arithmetic does not hold (at most): as far below
every threshold as a typical original is above it."""


# --- the τ/δ rule --------------------------------------------------------------------


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
    every score alike."""
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


def score_rule(scores: list[float], tau: float = _TAU, delta: float = _DELTA,
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


# --- weighted vetoes -------------------------------------------------------------------


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


# --- the calibration the decision reads ------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """What the run's canaries say about its reviewers, as the decision reads it (made by
    core.quality.canary_flow.CanaryBook.calibration after each batch's canaries)."""

    action: Literal["flag", "weight", "drop"] | None = None
    """The run's --calibration; None: not calibrating (no canaries), every score counts."""
    weights: Mapping[str, float] = field(default_factory=dict)
    """Reviewer → weight (core.quality.weights), for `weight`; unknown reviewers count 1."""
    flagged: frozenset[str] = frozenset()
    """Reviewers the canaries flagged, for `drop`."""
    evidence: Evidence | None = None
    """Which evidence the canary pairs show informative; None: the panel decides by the
    paper's rule whatever the canaries say (no canaries)."""

    @property
    def panel_decides(self) -> bool:
        """Whether samples are sent to the LLM panel (and its scores decide)."""
        return self.evidence is None or self.evidence.panel_decides

    @property
    def weighs_vetoes(self) -> bool:
        return self.action == "weight"

    def score_weights(self, models: list[str]) -> list[float] | None:
        """Per-score weights for the τ/δ rule; None: unweighted (flag, no canaries, or a
        `drop` that would drop every reviewer and leave nothing to decide on)."""
        if self.action == "weight":
            return [self.weights.get(m, 1.0) for m in models]
        if self.action == "drop" and not all(m in self.flagged for m in models):
            return [0.0 if m in self.flagged else 1.0 for m in models]
        return None

    def even_or_weights(self, models: list[str]) -> list[float]:
        return self.score_weights(models) or [1.0] * len(models)


@dataclass(frozen=True)
class Rule:
    tau: float = _TAU
    delta: float = _DELTA

    @classmethod
    def of(cls, options: RunOptions) -> Rule:
        return cls(options.tau, options.delta)


# --- the decision ----------------------------------------------------------------------


class Reached(IntEnum):
    """How far the round has gathered a candidate's evidence: what may be decided on."""

    GENERATED = 1
    """Draft and answer (or the given pair) and relevance: failures, off-topic, and the
    any-fail veto as each verdict comes in."""
    CHECKED = 2
    """The whole panel's instruction checks: weighted vetoes."""
    SCORED = 3
    """The panel's scores: the τ/δ rule."""
    ADJUDICATED = 4


class Status(str, Enum):
    PENDING = "pending"
    ACCEPT = "accept"
    REJECT = "reject"
    CONTESTED = "contested"
    UNVERIFIED = "unverified"
    """Nothing informative decides it yet (the round may hold it for later canaries)."""


@dataclass(frozen=True)
class Decision:
    status: Status
    reason: Reason | None = None
    detail: str = ""
    mean: float | None = None
    std: float | None = None
    weights: tuple[tuple[int, float], ...] = ()
    """(panel slot, weight) of each review that decided with a calibrated weight; the
    round writes them to the reviews (`Review.weight`), hence to the records."""
    margin: float | None = None
    """Where the cheap evidence decided (off_topic, evidence_reject, evidence_accept): its
    decision score, `Evidence.margin` (≥ 0: every informative check passed)."""

    @property
    def final(self) -> bool:
        return self.status in (Status.ACCEPT, Status.REJECT)


PENDING = Decision(Status.PENDING)


def decide(cand: Candidate, rule: Rule, calibration: Calibration, reached: Reached) -> Decision:
    """The decision the evidence gathered so far supports (see the module docstring)."""
    if cand.canary is not None:
        return PENDING
    if cand.failed is not None:
        return _failure(cand, rule)
    rel = cand.relevance
    evidence = calibration.evidence
    values = piece_values(cand) if evidence is not None else {}

    def scored() -> tuple[float, str] | None:
        """The cheap evidence's margin, asked only where it decides."""
        return None if evidence is None else \
            evidence.margin(values, None if rel is None else rel.threshold)

    def margin() -> float | None:
        return None if (s := scored()) is None else s[0]

    if rel is not None and relevance_vetoes(rel.cosine, rel.threshold):
        return Decision(Status.REJECT, Reason.OFF_TOPIC, f"cosine(instruction, response) "
                        f"{rel.cosine:.4f} < relevance threshold {rel.threshold:.4f}",
                        margin=margin())
    if evidence is not None:
        if evidence.arithmetic_vetoes and (sums := arithmetic.check(cand.response or "")) \
                and sums.wrong:
            return Decision(Status.REJECT, Reason.EVIDENCE_REJECT, f"arithmetic: {len(sums.wrong)} "
                            f"of {sums.equations} equations do not hold ({'; '.join(sums.wrong)})",
                            margin=min(margin() or 0.0, WRONG_SUMS_MARGIN))
        if (failed := evidence.failing(values)) is not None:
            check, value = failed
            return Decision(Status.REJECT, Reason.EVIDENCE_REJECT, f"{check.piece} {value:.4f} "
                            f"< threshold {check.threshold} (set on {evidence.pairs} canary "
                            f"pairs; catches {', '.join(check.kinds)})", margin=margin())
        if not evidence.panel_decides:
            return _unreviewed(evidence, values, reached, scored)
    weights: dict[int, float] = {}
    if calibration.weighs_vetoes:
        if reached < Reached.CHECKED:
            return PENDING
        given = [(slot, rv) for slot, rv in enumerate(cand.reviews) if rv.verdict is not None]
        even = calibration.even_or_weights([rv.model for _, rv in given])
        weights = {slot: w for (slot, _), w in zip(given, even, strict=True)}
        veto = weighted_veto([(rv.model, weights[slot], rv.verdict.failed_fields)
                              for slot, rv in given if rv.verdict is not None])
        if veto.rejected:
            return Decision(Status.REJECT, Reason.INSTRUCTION_FAILED, veto.detail,
                            weights=tuple(weights.items()))
    else:
        for rv in cand.reviews:
            if rv.verdict is not None and not rv.verdict.passed:
                return Decision(Status.REJECT, Reason.INSTRUCTION_FAILED, f"{rv.model} failed "
                                f"the instruction on: {', '.join(rv.verdict.failed_fields)}")
    if reached < Reached.SCORED:
        return Decision(Status.PENDING, weights=tuple(weights.items()))
    return _scored(cand, rule, calibration, weights, reached)


def _unreviewed(evidence: Evidence, values: Mapping[str, float], reached: Reached,
                margin_of: Callable[[], tuple[float, str] | None]) -> Decision:
    """The panel is not informative: the cheap evidence decides, or nothing does yet."""
    if reached < Reached.SCORED:
        return PENDING
    if evidence.cheap_decides:
        scored = margin_of()
        weakest = "" if scored is None else f"; margin {scored[0]:.2f} on {scored[1]}"
        return Decision(Status.ACCEPT, Reason.EVIDENCE_ACCEPT, f"passed every informative "
                        f"check ({evidence.passed(values)}{weakest}); correctness not "
                        f"checked: {evidence.panel_note()}", margin=None if scored is None
                        else scored[0])
    return Decision(Status.UNVERIFIED, Reason.UNVERIFIED, f"no evidence shown informative on "
                    f"{evidence.pairs} canary pairs; {evidence.panel_note()}")


def panel_outcome(cand: Candidate, rule: Rule, calibration: Calibration) -> Outcome:
    """The τ/δ rule over the scores the panel has given (routing asks it too)."""
    scored = [rv for rv in cand.reviews if rv.score is not None]
    return score_rule([_score(rv) for rv in scored], rule.tau, rule.delta,
                      calibration.score_weights([rv.model for rv in scored]))


def _scored(cand: Candidate, rule: Rule, calibration: Calibration,
            weights: dict[int, float], reached: Reached) -> Decision:
    slots = [slot for slot, rv in enumerate(cand.reviews) if rv.score is not None]
    scored = [cand.reviews[slot] for slot in slots]
    score_weights = calibration.score_weights([rv.model for rv in scored])
    if score_weights is not None:
        weights |= dict(zip(slots, score_weights, strict=True))
    outcome = score_rule([_score(rv) for rv in scored], rule.tau, rule.delta, score_weights)
    how = "" if score_weights is None else \
        f" ({_how(calibration, scored, score_weights)})"
    mean, std, used = outcome.mean, outcome.std, tuple(weights.items())
    if outcome.verdict is Verdict.ACCEPT:
        return Decision(Status.ACCEPT, Reason.ACCEPTED, f"μ {mean:.2f} ≥ τ and σ {std:.2f} ≤ δ{how}",
                        mean, std, used)
    if outcome.verdict is Verdict.REJECT:
        return Decision(Status.REJECT, Reason.LOW_SCORE, f"μ {mean:.2f} < τ {rule.tau}{how}",
                        mean, std, used)
    adj = cand.adjudication
    if adj is None or reached < Reached.ADJUDICATED:
        return Decision(Status.CONTESTED, None, "", mean, std, used)
    detail = f"σ {std:.2f} > δ; adjudicator {adj.model} scored {adj.score:.2f}"
    if adjudicator_keeps(adj.score, rule.tau):
        return Decision(Status.ACCEPT, Reason.ADJUDICATED_ACCEPT, detail, mean, std, used)
    return Decision(Status.REJECT, Reason.ADJUDICATED_REJECT, detail, mean, std, used)


def _failure(cand: Candidate, rule: Rule) -> Decision:
    """A stage's failure, with the plain μ/σ of whatever scores were given."""
    scores = [rv.score for rv in cand.reviews if rv.score is not None]
    mean = std = None
    if scores:
        outcome = score_rule(scores, rule.tau, rule.delta)
        mean, std = outcome.mean, outcome.std
    return Decision(Status.REJECT, Reason(cand.failed), cand.failed_detail, mean, std)


def _how(calibration: Calibration, scored: list[Review], weights: list[float]) -> str:
    """How the scores were combined, for a record's reason detail."""
    if calibration.action == "drop":
        return "flagged reviewers' scores dropped"
    return "weighted: " + ", ".join(f"{rv.model} {w:.2f}" for rv, w in zip(scored, weights, strict=True))


def _score(review: Review) -> float:
    assert review.score is not None
    return review.score
