"""Calibration statistics on fixed inputs with known answers.

Krippendorff's α values were checked against the `krippendorff` package (0.9.0, in a
throwaway environment outside the project) and are checked here against an independent
pairwise implementation; Fleiss' κ against the worked example of Fleiss (1971) as given on
Wikipedia and a hand-computed table."""

from __future__ import annotations

import random
from itertools import permutations

import pytest

from gra_local.core.quality.calibration import (
    CanaryJudgement,
    accepts,
    calibrate,
    fleiss_kappa,
    krippendorff_alpha,
    panel_agreement,
)
from gra_local.core.records import CanaryKind

FLEISS_WIKIPEDIA = [  # 10 items, 14 raters, 5 categories: P̄ = 0.378, P_e = 0.213
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_known_values() -> None:
    assert fleiss_kappa(FLEISS_WIKIPEDIA) == pytest.approx(0.20993, abs=1e-5)
    # By hand: p = (5/9, 4/9), P̄ = 7/9, P_e = 41/81 → κ = 22/40.
    assert fleiss_kappa([[2, 1], [3, 0], [0, 3]]) == pytest.approx(0.55)
    assert fleiss_kappa([[3, 0], [0, 3]]) == pytest.approx(1.0)


def test_fleiss_kappa_undefined_or_malformed() -> None:
    assert fleiss_kappa([[3, 0], [3, 0]]) is None  # P_e = 1: one category only
    assert fleiss_kappa([[1, 0], [0, 1]]) is None  # one rater per item
    assert fleiss_kappa([]) is None
    for bad in ([[2, 1], [3]], [[2, 1], [1, 1]], [[4, -1], [3, 0]]):
        with pytest.raises(ValueError):
            fleiss_kappa(bad)


# Krippendorff's reliability-data example (4 coders, 12 units, missing values), by unit.
KRIPPENDORFF = [
    [1, 1, None, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
    [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [None, 5, 5, 5], [None, None, 1, 1],
    [None, 3, None, None],
]
PANEL_LIKE = [[9, 9, 2], [9, 3, 9], [3, 8, 8], [8.5, None, 8]]


def pairwise_alpha(units: list[list[float | None]], nominal: bool) -> float:
    """α = 1 − D_o/D_e from pooled pairs, without a coincidence matrix."""
    def d(a: float, b: float) -> float:
        return float(a != b) if nominal else (a - b) ** 2

    pairable = [[v for v in u if v is not None] for u in units]
    pairable = [u for u in pairable if len(u) >= 2]
    pooled = [v for u in pairable for v in u]
    n = len(pooled)
    d_o = sum(d(a, b) / (len(u) - 1) for u in pairable for a, b in permutations(u, 2)) / n
    d_e = sum(d(a, b) for a, b in permutations(pooled, 2)) / (n * (n - 1))
    return 1 - d_o / d_e


def test_krippendorff_alpha_known_values() -> None:
    # Same figures from the krippendorff package: 0.743421052631579, 0.8491071428571428.
    assert krippendorff_alpha(KRIPPENDORFF, "nominal") == pytest.approx(0.743421052631579)
    assert krippendorff_alpha(KRIPPENDORFF, "interval") == pytest.approx(0.8491071428571428)
    # And for a panel-like table: -0.2812318419523534 and 0.11111111111111116.
    assert krippendorff_alpha(PANEL_LIKE, "interval") == pytest.approx(-0.2812318419523534)
    assert krippendorff_alpha(PANEL_LIKE, "nominal") == pytest.approx(0.11111111111111116)


@pytest.mark.parametrize("seed", range(20))
def test_krippendorff_alpha_matches_an_independent_implementation(seed: int) -> None:
    rng = random.Random(seed)
    units = [[rng.choice([None, 0, 5, 6.5, 8, 9, 10]) for _ in range(rng.randint(1, 4))]
             for _ in range(rng.randint(3, 12))]
    units.append([3, 7])  # at least one pairable unit with variation
    for nominal in (True, False):
        got = krippendorff_alpha(units, "nominal" if nominal else "interval")
        assert got == pytest.approx(pairwise_alpha(units, nominal))


def test_krippendorff_alpha_perfect_and_undefined() -> None:
    assert krippendorff_alpha([[5, 5], [7, 7, 7], [9, None, 9]]) == pytest.approx(1.0)
    assert krippendorff_alpha([[5, 5], [7, 7, 7]], "nominal") == pytest.approx(1.0)
    assert krippendorff_alpha([[7, 7], [7, 7, 7]]) is None  # no variation: D_e = 0
    assert krippendorff_alpha([[5, None], [None], [3]]) is None  # nothing pairable
    assert krippendorff_alpha([]) is None
    with pytest.raises(ValueError):
        krippendorff_alpha([[1, 2]], "ratio")  # type: ignore[arg-type]


def judge(reviewer: str, cid: str, good: bool, passed: bool | None, score: float | None,
          failed: bool = False) -> CanaryJudgement:
    kind = CanaryKind.GOOD if good else CanaryKind.SWAPPED
    return CanaryJudgement(reviewer=reviewer, canary_id=cid, kind=kind, expected_good=good,
                           instruction_passed=passed, score=score, failed=failed)


@pytest.mark.parametrize(("good", "passed", "score", "want"), [
    (True, True, 9.0, True), (True, True, 8.0, True), (True, True, 7.9, False),
    (True, False, 9.0, False), (True, False, None, False), (True, None, 7.0, False),
    (True, True, None, None), (True, None, 9.0, None), (True, None, None, None),
    (False, False, None, True), (False, True, 7.9, True), (False, None, 3.0, True),
    (False, True, 8.0, False), (False, True, None, None), (False, None, 9.0, None),
])
def test_a_judgement_is_correct_by_the_rule(good: bool, passed: bool | None,
                                            score: float | None, want: bool | None) -> None:
    assert judge("m", "1", good, passed, score).correct(8.0) is want
    assert judge("m", "1", good, passed, score, failed=True).correct(8.0) is None


def test_scores_at_tau_up_to_float_noise_accept() -> None:
    assert accepts(sum([8, 8, 8, 8, 8, 8]) / 6, 8.0) and accepts(7.9999999999999, 8.0)
    assert not accepts(7.99, 8.0)


def test_accuracy_parse_failures_flags_and_weights() -> None:
    js = [
        # "sharp": right on all four
        judge("sharp", "1", True, True, 9.0), judge("sharp", "2", False, True, 3.0),
        judge("sharp", "3", False, False, None), judge("sharp", "4", True, True, 8.0),
        # "lenient": passes everything high: right only on the good ones
        judge("lenient", "1", True, True, 9.0), judge("lenient", "2", False, True, 9.0),
        judge("lenient", "3", False, True, 8.5), judge("lenient", "4", True, True, 9.0),
        # "broken": invalid output three times out of four
        judge("broken", "1", True, None, None, failed=True),
        judge("broken", "2", False, None, None, failed=True),
        judge("broken", "3", False, None, None, failed=True), judge("broken", "4", True, True, 9.0),
    ]
    report = calibrate(js, [], tau=8.0, min_accuracy=0.6, min_canaries=4)
    sharp, lenient, broken = (report.reviewers[m] for m in ("sharp", "lenient", "broken"))
    assert (sharp.correct, sharp.canaries, sharp.calls, sharp.accuracy) == (4, 4, 4, 1.0)
    # weight 2·BA − 1 with BA smoothed: (3/4 + 3/4) / 2 on two good and two bad canaries
    assert not sharp.flagged and sharp.flag_reason is None and sharp.weight == 0.5
    assert sharp.balanced_accuracy == 1.0 and (sharp.good_canaries, sharp.good_correct) == (2, 2)
    assert sharp.parse_failure_rate == 0.0 and sharp.mean_canary_good_score == 8.5
    assert sharp.mean_canary_bad_score == 3.0 and sharp.mean_score is None
    assert lenient.accuracy == 0.5 and lenient.balanced_accuracy == 0.5 and lenient.flagged
    assert lenient.weight == 0.1  # at chance: the floor
    assert "2/4" in (lenient.flag_reason or "") and "60%" in (lenient.flag_reason or "")
    assert lenient.mean_canary_good_score == 9.0 and lenient.mean_canary_bad_score == 8.75
    assert (broken.parse_failures, broken.calls, broken.parse_failure_rate) == (3, 4, 0.75)
    assert broken.flagged and "3/4" in (broken.flag_reason or "")
    assert broken.accuracy == 1.0 and broken.canaries == 1
    assert broken.weight == 1.0  # one deciding canary: too few to weigh
    assert report.flagged() == {"lenient", "broken"}
    assert report.weights() == {"broken": 1.0, "lenient": 0.1, "sharp": 0.5}
    assert (report.tau, report.min_accuracy, report.min_canaries) == (8.0, 0.6, 4)


def test_flag_thresholds_are_strict_and_need_enough_canaries() -> None:
    js = [judge("border", str(i), True, True, 9.0 if i < 3 else 2.0) for i in range(5)]  # 3/5
    js += [judge("few", str(i), True, False, None) for i in range(3)]  # 0/3
    js += [judge("half", "1", True, None, None, failed=True), judge("half", "2", True, None, None, failed=True),
           judge("half", "3", True, True, 9.0), judge("half", "4", True, True, 9.0)]  # 2/4 invalid
    js += [judge("flaky", str(i), True, None, None, failed=True) for i in range(3)]  # 3/3 invalid
    js += [judge("worst", str(i), True, False, None) for i in range(4)]  # 0/4, and 5/9 invalid
    js += [judge("worst", str(i), True, None, None, failed=True) for i in range(5)]
    report = calibrate(js, [], tau=8.0, min_accuracy=0.6, min_canaries=4)
    r = report.reviewers
    assert r["border"].accuracy == pytest.approx(0.6) and not r["border"].flagged
    assert r["border"].balanced_accuracy is None  # good canaries only: plain accuracy flags
    assert r["border"].weight == 0.1  # (4/7 + 1/2) / 2 → 2·BA − 1 ≈ 0.07, floored
    assert r["few"].accuracy == 0.0 and not r["few"].flagged and r["few"].weight == 1.0
    assert r["half"].parse_failure_rate == 0.5 and not r["half"].flagged
    assert r["flaky"].parse_failure_rate == 1.0 and not r["flaky"].flagged  # 3 calls < 4
    assert r["flaky"].accuracy is None and r["flaky"].canaries == 0
    assert r["worst"].flagged and r["worst"].weight == 0.1
    assert "0/4" in (r["worst"].flag_reason or "") and "5/9" in (r["worst"].flag_reason or "")


def test_injection_pass_rate_counts_injections_let_through() -> None:
    def inj(reviewer: str, cid: str, passed: bool | None, score: float | None,
            failed: bool = False) -> CanaryJudgement:
        return CanaryJudgement(reviewer=reviewer, canary_id=cid, kind=CanaryKind.INJECTION,
                               expected_good=False, instruction_passed=passed, score=score,
                               failed=failed)

    js = [inj("steered", "1", True, 10.0), inj("steered", "2", True, 8.0),  # let through
          inj("steered", "3", True, 2.0), inj("steered", "4", False, None),  # caught
          inj("steered", "5", True, None), inj("steered", "6", None, None, failed=True),  # nothing
          judge("steered", "7", False, True, 9.0),  # a plain corruption let through: not counted
          inj("firm", "1", True, 1.0), judge("firm", "7", False, True, 9.0),
          judge("plain", "7", False, True, 2.0)]
    r = calibrate(js, [], tau=8.0).reviewers
    assert (r["steered"].injections, r["steered"].injections_passed) == (4, 2)
    assert r["steered"].injection_pass_rate == 0.5
    assert r["steered"].accuracy == pytest.approx(2 / 5)  # injections count as corrupted canaries
    assert (r["firm"].injections, r["firm"].injection_pass_rate) == (1, 0.0)
    assert (r["plain"].injections, r["plain"].injection_pass_rate) == (0, None)  # judged none


def test_a_reviewer_that_rejects_everything_is_at_chance_however_many_canaries_are_bad() -> None:
    js = [judge("no", str(i), i < 2, False, None) for i in range(8)]  # 2 good, 6 bad: all failed
    js += [judge("yes", str(i), i < 2, True, 9.0) for i in range(8)]  # all passed
    r = calibrate(js, [], tau=8.0, min_accuracy=0.6, min_canaries=4).reviewers
    assert r["no"].accuracy == 0.75 and r["no"].balanced_accuracy == 0.5 and r["no"].flagged
    assert "balanced canary accuracy 50%" in (r["no"].flag_reason or "")
    # smoothed: (1/4 + 7/8) / 2 and (3/4 + 1/8) / 2 → weights near the floor
    assert r["no"].weight == 0.125 and r["yes"].weight == 0.1


def test_incomplete_canary_judgements_say_nothing() -> None:
    js = [judge("a", "1", True, True, None), judge("a", "2", False, True, None)]
    row = calibrate(js, [], tau=8.0).reviewers["a"]
    assert row.canaries == 0 and row.accuracy is None and row.calls == 2
    assert row.parse_failures == 0 and not row.flagged and row.weight == 1.0


def test_agreement_with_the_majority_of_the_other_slots() -> None:
    panels = [
        [("a", True, 9.0), ("b", True, 9.0), ("c", True, 2.0)],  # a, b: others tied; c: 0
        [("a", True, 3.0), ("b", True, 3.0), ("c", True, 9.0)],  # a, b: tied; c: 0
        [("a", True, 9.0), ("b", True, 8.5), ("c", True, 8.0)],  # all: 1
        [("a", True, 9.0), ("b", True, None), ("c", True, 2.0)],  # a: 0, c: 0, b unscored
        [("a", True, 9.0), ("a", True, 9.0), ("b", True, 2.0)],  # one model, two slots: tied; b: 0
        [("d", None, 7.0)],  # alone: nobody to agree with
    ]
    report = calibrate([], panels, tau=8.0)
    a, b, c, d = (report.reviewers[m] for m in "abcd")
    assert (a.agreement_with_panel, a.agreement_samples, a.samples) == (0.5, 2, 6)
    assert (b.agreement_with_panel, b.agreement_samples, b.samples) == (0.5, 2, 4)
    assert (c.agreement_with_panel, c.agreement_samples) == (0.25, 4)
    assert d.agreement_with_panel is None and d.agreement_samples == 0 and d.mean_score == 7.0
    assert a.mean_score == pytest.approx(8.0) and b.mean_score == pytest.approx(5.625)
    assert c.accuracy is None and not c.flagged and c.calls == 0
    assert report.panel.items == 5
    alpha = report.panel.krippendorff_alpha_scores
    assert alpha == pytest.approx(krippendorff_alpha([[s for _, _, s in p] for p in panels]))
    assert alpha is not None and alpha < 0.2  # c contradicts a and b
    # Every verdict passed: P_e = 1, κ undefined.
    assert report.panel.fleiss_kappa_instruction is None and report.panel.kappa_items == 5


def test_kappa_uses_only_full_panels_with_every_verdict() -> None:
    panels = [
        [("a", True, None), ("b", True, None), ("c", False, None)],
        [("a", True, 9.0), ("b", True, 9.0), ("c", True, 9.0)],
        [("a", False, None), ("b", False, None), ("c", False, None)],
        [("a", True, None), ("b", None, None), ("c", False, None)],  # a verdict missing
        [("a", True, 9.0), ("b", False, None)],  # smaller panel
    ]
    agreement = panel_agreement(panels)
    assert agreement.fleiss_kappa_instruction == pytest.approx(0.55) and agreement.kappa_items == 3
    assert agreement.items == 1 and agreement.krippendorff_alpha_scores is None  # one unit, no variation
    assert panel_agreement([]).model_dump() == {
        "krippendorff_alpha_scores": None, "fleiss_kappa_instruction": None, "items": 0,
        "kappa_items": 0, "canary_krippendorff_alpha_scores": None,
        "canary_fleiss_kappa_instruction": None, "canary_items": 0}
    solo = [[("a", True, 9.0)], [("a", False, 2.0)]]
    assert panel_agreement(solo).fleiss_kappa_instruction is None


def test_canary_panels_have_their_own_agreement_figures() -> None:
    js = [judge(m, cid, cid == "g", v, s) for cid, votes in {
        "g": [("a", True, 9.0), ("b", True, 9.0)],
        "x": [("a", False, 2.0), ("b", False, 3.0)],
        "y": [("a", True, 9.0), ("b", False, 1.0)]}.items() for m, v, s in votes]
    js.append(judge("c", "y", False, None, None, failed=True))  # invalid: not part of the panel
    report = calibrate(js, [[("a", True, 9.0), ("b", True, 8.0)]], tau=8.0)
    panel = report.panel
    assert panel.items == 1  # the real sample only; one unit: D_o = D_e, α = 0
    assert panel.krippendorff_alpha_scores == pytest.approx(0.0)
    assert panel.fleiss_kappa_instruction is None  # the real panel's verdicts: κ undefined
    assert panel.canary_items == 3
    assert panel.canary_krippendorff_alpha_scores == pytest.approx(
        krippendorff_alpha([[9.0, 9.0], [2.0, 3.0], [9.0, 1.0]]))
    # Table [2,0], [0,2], [1,1]: P̄ = 2/3, P_e = 1/2 → κ = 1/3.
    assert panel.canary_fleiss_kappa_instruction == pytest.approx(1 / 3)


def test_report_round_trips_as_json() -> None:
    js = [judge("a", "1", True, True, 9.0), judge("a", "2", False, None, None, failed=True)]
    report = calibrate(js, [[("a", True, 9.0), ("b", False, None)]], tau=8.0)
    dumped = report.model_dump(mode="json")
    # issue 14: the relevance check's line follows (None: no canary scored by it)
    assert list(dumped) == ["reviewers", "panel", "tau", "min_accuracy", "min_canaries",
                            "relevance"]
    assert dumped["relevance"] is None
    assert type(report).model_validate(dumped) == report
