"""Calibration statistics on fixed inputs with known answers."""

from __future__ import annotations

import pytest

from gra_local.core.calibration import (
    CanaryJudgement,
    calibrate,
    fleiss_kappa,
    krippendorff_alpha,
)
from gra_local.core.canaries import CanaryKind


def test_fleiss_kappa_textbook_example() -> None:
    # The worked example of Fleiss (1971) as given on Wikipedia: 10 items, 14 raters.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa([[3, 0], [3, 0]]) is None  # everyone always agrees on one category
    assert fleiss_kappa([[2, 1], [3]]) is None  # unequal rater counts
    assert fleiss_kappa([]) is None


KRIPPENDORFF = [  # Krippendorff's reliability-data example: 4 coders × 12 units
    [1, 1, None, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
    [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [None, 5, 5, 5], [None, None, 1, 1],
    [None, 3, None, None],
]


def test_krippendorff_alpha_known_values() -> None:
    assert krippendorff_alpha(KRIPPENDORFF, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(KRIPPENDORFF, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha([[5, 5], [7, 7, 7]]) == 1.0
    assert krippendorff_alpha([[5, None], [None]]) is None
    with pytest.raises(ValueError):
        krippendorff_alpha([[1, 2]], "ratio")


def judge(reviewer: str, cid: str, good: bool, passed: bool | None, score: float | None,
          failed: bool = False) -> CanaryJudgement:
    kind = CanaryKind.GOOD if good else CanaryKind.SWAPPED
    return CanaryJudgement(reviewer=reviewer, canary_id=cid, kind=kind, expected_good=good,
                           instruction_passed=passed, score=score, failed=failed)


def test_accuracy_parse_failures_and_flags() -> None:
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
    assert (sharp.correct, sharp.canaries, sharp.accuracy, sharp.flagged) == (4, 4, 1.0, False)
    assert lenient.accuracy == 0.5 and lenient.flagged and lenient.weight == 0.5
    assert "2/4" in (lenient.flag_reason or "")
    assert lenient.mean_canary_good_score == 9.0 and lenient.mean_canary_bad_score == 8.75
    assert broken.parse_failure_rate == 0.75 and broken.flagged
    assert broken.accuracy == 1.0 and broken.weight == 1.0  # 1 valid canary: too few to weigh
    assert sharp.weight == 1.0


def test_agreement_with_the_rest_of_the_panel() -> None:
    panels = [
        [("a", True, 9.0), ("b", True, 9.0), ("c", True, 2.0)],
        [("a", True, 3.0), ("b", True, 3.0), ("c", True, 9.0)],
        [("a", True, 9.0), ("b", True, 8.5), ("c", True, 8.0)],
    ]
    report = calibrate([], panels, tau=8.0)
    # a agrees with b three times, with c once: 4 of 6 pairs; c: 2 of 6.
    assert report.reviewers["a"].agreement_with_panel == pytest.approx(4 / 6)
    assert report.reviewers["c"].agreement_with_panel == pytest.approx(2 / 6)
    assert report.reviewers["a"].mean_score == pytest.approx(7.0)
    assert report.reviewers["c"].accuracy is None and not report.reviewers["c"].flagged
    assert report.panel.items == 3
    alpha = report.panel.krippendorff_alpha_scores
    assert alpha is not None and alpha < 0.2  # c contradicts a and b twice
    assert report.panel.fleiss_kappa_instruction is None  # everyone always passed


def test_incomplete_canary_judgements_say_nothing() -> None:
    js = [judge("a", "1", True, True, None), judge("a", "2", False, True, None)]
    row = calibrate(js, [], tau=8.0).reviewers["a"]
    assert row.canaries == 0 and row.accuracy is None and row.calls == 2
