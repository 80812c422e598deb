"""`decision.decide`, the one function that decides, table-driven: a candidate's evidence,
the run's calibration and how far the round has got → status, reason, detail, weights."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gra_local.core.candidate import Candidate
from gra_local.core.quality.decision import (
    Calibration,
    Reached,
    Rule,
    Status,
    decide,
)
from gra_local.core.quality.evidence import Check
from gra_local.core.quality.evidence import Evidence as Measured
from gra_local.core.records import (
    Adjudication,
    Canary,
    GivenPair,
    InstructionVerdict,
    LikelihoodScore,
    Reason,
    RelevanceScore,
    Review,
    Scores,
)
from gra_local.core.roles import RoleDraw
from gra_local.core.rundir.calibration_report import Discrimination

PASS = InstructionVerdict(reasonable="pass", complete="pass", clear="pass")
FAIL = InstructionVerdict(reasonable="pass", complete="fail", clear="pass")
RULE = Rule(tau=8.0, delta=1.5)
WEIGHTS = Calibration("weight", weights={"a": 0.8, "b": 0.1, "c": 0.3})


def scores(value: int) -> Scores:
    return Scores(correctness=value, clarity=value, completeness=value, relevance=value,
                  coherence=value, ethics=value, feedback="")


@dataclass
class Evidence:
    verdicts: list[InstructionVerdict | None] = field(default_factory=lambda: [PASS] * 3)
    scores: list[float | None] = field(default_factory=lambda: [None] * 3)
    failed: Reason | None = None
    cosine: float | None = None
    adjudicated: float | None = None
    canary: bool = False
    pmi: float | None = None

    def candidate(self) -> Candidate:
        cand = Candidate.new(1, 1, 0, "math", [], RoleDraw("g", ["a", "b", "c"], ["d"]))
        cand.draft = GivenPair(instruction="Add 2 and 2.")
        cand.response = "4"
        for rv, verdict, score in zip(cand.reviews, self.verdicts, self.scores, strict=True):
            rv.verdict = verdict
            if score is not None:
                rv.scores, rv.score = scores(round(score)), score
        if self.failed is not None:
            cand.fail(self.failed, "the stage said why")
        if self.cosine is not None:
            cand.relevance = RelevanceScore(cosine=self.cosine, threshold=0.4)
        if self.adjudicated is not None:
            cand.adjudication = Adjudication(model="d", scores=scores(round(self.adjudicated)),
                                             score=self.adjudicated, kept=self.adjudicated >= 8)
        if self.pmi is not None:
            cand.likelihood = LikelihoodScore(model="g", tokens=3, mean_logprob=-1.0, pmi=self.pmi,
                                              end_logprob=-0.5, low_tail=-3.0)
        if self.canary:
            cand.canary = Canary(id="k", kind="good", instruction="i", response="r", domain="math",
                                 expected_good=True)
        return cand


ANY_FAIL = Calibration()


def measured(reviewer: str, pmi: str | None, relevance: str | None = None) -> Calibration:
    """A calibration whose canary pairs gave these standings (None: no such piece)."""
    pieces = {"reviewer a: scores": Discrimination(pairs=8, accuracy=0.5, p_better=0.5,
                                                   standing=reviewer)}
    checks: tuple[Check, ...] = ()
    if pmi is not None:
        pieces["likelihood pmi"] = Discrimination(pairs=8, accuracy=1.0, p_better=0.99,
                                                  standing=pmi, threshold=0.2)
        if pmi == "informative":
            checks = (Check("likelihood pmi", 0.2, ("swapped",)),)
    if relevance is not None:
        pieces["relevance"] = Discrimination(pairs=8, accuracy=1.0, p_better=0.99, standing=relevance)
    return Calibration("weight", weights={"a": 0.8, "b": 0.1, "c": 0.3},
                       evidence=Measured(pieces, checks))


PANEL_AT_CHANCE = measured("at_chance", "informative")
PANEL_INFORMATIVE = measured("informative", "informative")
NOTHING_YET = measured("unsettled", "unsettled")
CASES = [
    # (name, evidence, calibration, reached, status, reason, detail contains)
    ("a stage's failure rejects at once, with its reason",
     Evidence(failed=Reason.TOO_LONG), ANY_FAIL, Reached.GENERATED, Status.REJECT,
     Reason.TOO_LONG, "the stage said why"),
    ("a canary is never decided", Evidence(failed=Reason.TOO_LONG, canary=True), ANY_FAIL,
     Reached.ADJUDICATED, Status.PENDING, None, ""),
    ("an off-topic answer is vetoed before any review",
     Evidence(verdicts=[None] * 3, cosine=0.2), ANY_FAIL, Reached.GENERATED, Status.REJECT,
     Reason.OFF_TOPIC, "0.2000 < relevance threshold 0.4000"),
    ("a cosine equal to the threshold passes", Evidence(verdicts=[None] * 3, cosine=0.4),
     ANY_FAIL, Reached.GENERATED, Status.PENDING, None, ""),
    ("any-fail: one failing verdict rejects as soon as it is given",
     Evidence(verdicts=[FAIL, None, None]), ANY_FAIL, Reached.GENERATED, Status.REJECT,
     Reason.INSTRUCTION_FAILED, "a failed the instruction on: complete"),
    ("weighted: nothing is vetoed before the whole panel has answered",
     Evidence(verdicts=[FAIL, FAIL, FAIL]), WEIGHTS, Reached.GENERATED, Status.PENDING, None, ""),
    ("weighted: a reviewer with w >= 1/2 vetoes alone",
     Evidence(verdicts=[FAIL, PASS, PASS]), WEIGHTS, Reached.CHECKED, Status.REJECT,
     Reason.INSTRUCTION_FAILED, "a (weight 0.80) on complete: summed weight 0.80 ≥ 0.5"),
    ("weighted: reviewers near chance do not, together under the level",
     Evidence(verdicts=[PASS, FAIL, FAIL]), WEIGHTS, Reached.CHECKED, Status.PENDING, None, ""),
    ("the instruction checks passed, scores are not in yet", Evidence(), ANY_FAIL,
     Reached.CHECKED, Status.PENDING, None, ""),
    ("μ ≥ τ and σ ≤ δ accepts", Evidence(scores=[9, 9, 8]), ANY_FAIL, Reached.SCORED,
     Status.ACCEPT, Reason.ACCEPTED, "μ 8.67 ≥ τ and σ 0.47 ≤ δ"),
    ("μ < τ rejects low_score", Evidence(scores=[7, 8, 8]), ANY_FAIL, Reached.SCORED,
     Status.REJECT, Reason.LOW_SCORE, "μ 7.67 < τ 8.0"),
    ("σ > δ is contested until an adjudicator has spoken",
     Evidence(scores=[10, 10, 6], adjudicated=9), ANY_FAIL, Reached.SCORED, Status.CONTESTED,
     None, ""),
    ("the adjudicator keeps at τ", Evidence(scores=[10, 10, 6], adjudicated=8), ANY_FAIL,
     Reached.ADJUDICATED, Status.ACCEPT, Reason.ADJUDICATED_ACCEPT, "adjudicator d scored 8.00"),
    ("the adjudicator rejects below τ", Evidence(scores=[10, 10, 6], adjudicated=7.5), ANY_FAIL,
     Reached.ADJUDICATED, Status.REJECT, Reason.ADJUDICATED_REJECT, "σ 1.89 > δ"),
    ("weights move μ: the weak reviewer's low score counts little",
     Evidence(scores=[9, 5, 9]), WEIGHTS, Reached.SCORED, Status.ACCEPT, Reason.ACCEPTED,
     "weighted: a 0.80, b 0.10, c 0.30"),
    ("drop: a flagged reviewer's score counts 0",
     Evidence(scores=[9, 2, 9]), Calibration("drop", flagged=frozenset({"b"})), Reached.SCORED,
     Status.ACCEPT, Reason.ACCEPTED, "flagged reviewers' scores dropped"),
    ("drop: when every reviewer is flagged, every score counts",
     Evidence(scores=[9, 2, 9]), Calibration("drop", flagged=frozenset("abc")), Reached.SCORED,
     Status.REJECT, Reason.LOW_SCORE, "μ 6.67 < τ 8.0"),
    ("evidence: an informative signal below its threshold rejects before any review",
     Evidence(verdicts=[None] * 3, pmi=0.1), PANEL_AT_CHANCE, Reached.GENERATED, Status.REJECT,
     Reason.EVIDENCE_REJECT, "likelihood pmi 0.1000 < threshold 0.2 (set on 8 canary pairs; "
     "catches swapped)"),
    ("evidence: the relevance veto still comes first",
     Evidence(verdicts=[None] * 3, pmi=0.1, cosine=0.2), PANEL_AT_CHANCE, Reached.GENERATED,
     Status.REJECT, Reason.OFF_TOPIC, "< relevance threshold"),
    ("evidence: panel at chance, the cheap evidence waits for the whole round",
     Evidence(verdicts=[None] * 3, pmi=0.5), PANEL_AT_CHANCE, Reached.CHECKED, Status.PENDING,
     None, ""),
    ("evidence: panel at chance, every informative check passed: accepted, correctness "
     "not checked", Evidence(verdicts=[None] * 3, pmi=0.5), PANEL_AT_CHANCE, Reached.SCORED,
     Status.ACCEPT, Reason.EVIDENCE_ACCEPT, "passed every informative check (pmi 0.500 ≥ 0.2); "
     "correctness not checked: no reviewer better than chance on 8 canary pairs"),
    ("evidence: relevance alone informative decides too",
     Evidence(verdicts=[None] * 3, cosine=0.5), measured("at_chance", None, "informative"),
     Reached.SCORED, Status.ACCEPT, Reason.EVIDENCE_ACCEPT, "relevance 0.500"),
    ("evidence: nothing informative yet: unverified, never accepted or rejected",
     Evidence(verdicts=[None] * 3, pmi=-5.0), NOTHING_YET, Reached.SCORED, Status.UNVERIFIED,
     Reason.UNVERIFIED, "no evidence shown informative on 8 canary pairs; no reviewer shown "
     "better than chance yet"),
    ("evidence: an informative panel decides by the paper's rule",
     Evidence(scores=[7, 8, 8], pmi=0.5), PANEL_INFORMATIVE, Reached.SCORED, Status.REJECT,
     Reason.LOW_SCORE, "weighted: a 0.80"),
    ("evidence: an informative panel's weighted veto stands",
     Evidence(verdicts=[FAIL, PASS, PASS], pmi=0.5), PANEL_INFORMATIVE, Reached.CHECKED,
     Status.REJECT, Reason.INSTRUCTION_FAILED, "summed weight 0.80"),
    ("a failure after scores keeps their plain μ and σ for the record",
     Evidence(scores=[9, 5, None], failed=Reason.REVIEW_FAILED), WEIGHTS, Reached.SCORED,
     Status.REJECT, Reason.REVIEW_FAILED, "the stage said why"),
]


@pytest.mark.parametrize(("evidence", "calibration", "reached", "status", "reason", "detail"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(evidence: Evidence, calibration: Calibration, reached: Reached, status: Status,
                reason: Reason | None, detail: str) -> None:
    decision = decide(evidence.candidate(), RULE, calibration, reached)
    assert decision.status is status
    assert decision.reason == reason
    assert detail in decision.detail


def test_the_weights_that_decided_are_returned_per_slot() -> None:
    cand = Evidence(scores=[9, 5, 9]).candidate()
    decision = decide(cand, RULE, WEIGHTS, Reached.SCORED)
    assert dict(decision.weights) == {0: 0.8, 1: 0.1, 2: 0.3}
    assert (decision.mean, decision.std) == (pytest.approx(8.666666667), pytest.approx(1.105541597))
    unweighted = decide(cand, RULE, ANY_FAIL, Reached.SCORED)
    assert unweighted.weights == () and unweighted.mean == pytest.approx(7.666666667)


def test_a_failure_records_unweighted_mean_of_the_given_scores() -> None:
    decision = decide(Evidence(scores=[9, 5, None], failed=Reason.REVIEW_FAILED).candidate(),
                      RULE, WEIGHTS, Reached.SCORED)
    assert (decision.mean, decision.std) == (7.0, 2.0)


def test_a_skipped_slot_does_not_count() -> None:
    cand = Evidence(scores=[9, 9, None]).candidate()
    cand.reviews[2].skipped = True
    assert decide(cand, RULE, ANY_FAIL, Reached.SCORED).status is Status.ACCEPT


def test_extra_reviewers_score_but_are_not_checked() -> None:
    cand = Evidence(scores=[9, 9, 6]).candidate()
    cand.reviews.append(Review(model="e", extra=True, scores=scores(9), score=9.0))
    decision = decide(cand, RULE, WEIGHTS, Reached.SCORED)
    assert decision.status is Status.ACCEPT and dict(decision.weights)[3] == 1.0


def test_evidence_decisions_carry_their_margin() -> None:
    """Where the cheap evidence decides, the decision carries its score (the record's
    `margin`): ≥ 0 accepted, below 0 rejected, a far-off answer lower than a near miss;
    where the panel decides, none."""
    pieces = {"likelihood pmi": Discrimination(pairs=8, accuracy=1.0, p_better=0.99,
                                               standing="informative", threshold=0.2),
              "relevance": Discrimination(pairs=8, accuracy=1.0, p_better=0.99,
                                          standing="informative")}
    cal = Calibration("weight", evidence=Measured(pieces, (Check("likelihood pmi", 0.2, ("swapped",), 1.2),),
                                                  relevance_typical=0.8))
    def margin(pmi: float, cosine: float) -> tuple[Reason | None, float | None]:
        d = decide(Evidence(verdicts=[None] * 3, pmi=pmi, cosine=cosine).candidate(), RULE, cal,
                   Reached.SCORED)
        return d.reason, d.margin
    assert margin(1.2, 0.8) == (Reason.EVIDENCE_ACCEPT, pytest.approx(1.0))
    assert margin(0.7, 0.8) == (Reason.EVIDENCE_ACCEPT, pytest.approx(0.5))  # the lower of the two
    assert margin(0.1, 0.8) == (Reason.EVIDENCE_REJECT, pytest.approx(-0.1))
    assert margin(-0.8, 0.8) == (Reason.EVIDENCE_REJECT, pytest.approx(-1.0))
    assert margin(1.2, 0.3) == (Reason.OFF_TOPIC, pytest.approx(-0.25))  # (0.3 − 0.4) / (0.8 − 0.4)
    assert "margin 0.50 on likelihood pmi" in decide(
        Evidence(verdicts=[None] * 3, pmi=0.7, cosine=0.8).candidate(), RULE, cal, Reached.SCORED).detail
    panel = decide(Evidence(scores=[9, 9, 9], pmi=0.7).candidate(), RULE, PANEL_INFORMATIVE,
                   Reached.SCORED)
    assert panel.reason is Reason.ACCEPTED and panel.margin is None


def test_an_arithmetic_reject_names_the_equation_that_does_not_hold() -> None:
    """With evidence judging a wrong equation rejects before anything else is asked, its
    decision score far under 0; with the paper's rule (no evidence) it is the panel's."""
    cal = measured("at_chance", "informative", relevance="informative")
    cand = Evidence(verdicts=[None] * 3, pmi=1.0, cosine=0.8).candidate()
    cand.response = "2 + 2 = 5, and 3 × 3 = 9."
    decision = decide(cand, RULE, cal, Reached.GENERATED)
    assert (decision.status, decision.reason) == (Status.REJECT, Reason.EVIDENCE_REJECT)
    assert decision.detail == "arithmetic: 1 of 2 equations do not hold (2 + 2 = 5 (the first side is 4))"
    assert decision.margin == -1.0
    cand.response = "2 + 2 = 4, and 3 × 3 = 9."
    assert decide(cand, RULE, cal, Reached.SCORED).reason is Reason.EVIDENCE_ACCEPT
    cand.response = "2 + 2 = 5."
    assert decide(cand, RULE, ANY_FAIL, Reached.GENERATED).status is Status.PENDING
