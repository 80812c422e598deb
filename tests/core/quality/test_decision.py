"""The τ/δ decision rule (docs/method.md, "One round", step 4): edges, float noise, σ convention."""

from __future__ import annotations

import math
import statistics

import pytest

from gra_local.core.quality.decision import Verdict, adjudicator_keeps, mean_and_std
from gra_local.core.quality.decision import score_rule as decide
from gra_local.core.records import Scores

ACCEPT, REJECT, ADJUDICATE = Verdict.ACCEPT, Verdict.REJECT, Verdict.ADJUDICATE


def six(*values: int) -> float:
    """A reviewer's score as the pipeline computes it: the mean of its six integers."""
    assert len(values) == 6
    return Scores(correctness=values[0], clarity=values[1], completeness=values[2],
                  relevance=values[3], coherence=values[4], ethics=values[5]).mean


def sixths(*numerators: int) -> list[float]:
    """Reviewer scores k/6 (every six-integer mean is one), computed like Scores.mean."""
    return [n / 6 for n in numerators]


# --- the three branches at their edges -------------------------------------------------


def test_mean_exactly_tau_is_accepted() -> None:
    out = decide([8.0, 8.0, 8.0])
    assert out.verdict is ACCEPT
    assert (out.mean, out.std) == (8.0, 0.0)


def test_mean_just_below_tau_is_rejected() -> None:
    # the closest a panel of three six-score means can get below 8: 8 - 1/18
    out = decide(sixths(48, 48, 47))
    assert out.mean < 8
    assert out.verdict is REJECT


def test_mean_a_hair_below_tau_is_rejected() -> None:
    assert decide([7.9999, 8.0, 8.0]).verdict is REJECT
    assert decide([7.99999]).verdict is REJECT


def test_low_mean_rejects_even_with_high_spread() -> None:
    # μ < τ decides before σ is looked at
    assert decide([2.0, 10.0, 10.0]).verdict is REJECT


def test_std_exactly_delta_is_accepted() -> None:
    out = decide([6.5, 9.5])
    assert out.std == 1.5
    assert out.verdict is ACCEPT
    out = decide([6.5, 6.5, 9.5, 9.5])
    assert (out.mean, out.std) == (8.0, 1.5)
    assert out.verdict is ACCEPT


def test_std_just_above_delta_is_adjudicated() -> None:
    out = decide(sixths(38, 58))  # 6.33 and 9.67: μ 8, σ 1.67
    assert out.mean == 8.0 and out.std > 1.5
    assert out.verdict is ADJUDICATE
    assert decide([6.499999, 9.500001]).verdict is ADJUDICATE


def test_custom_tau_and_delta() -> None:
    assert decide([7.0, 7.0], tau=7).verdict is ACCEPT
    assert decide([6.9, 7.0], tau=7).verdict is REJECT
    assert decide([7.0, 9.0], delta=1.0).verdict is ACCEPT
    assert decide([7.0, 9.0], delta=0.99).verdict is ADJUDICATE
    assert decide([10.0, 10.0], tau=10, delta=0).verdict is ACCEPT


# --- float noise ----------------------------------------------------------------------


def test_six_score_mean_is_exact() -> None:
    assert six(7, 8, 9, 8, 8, 8) == 8.0
    assert decide([six(7, 8, 9, 8, 8, 8)] * 3).verdict is ACCEPT


def test_reviewer_means_with_float_noise_count_as_tau() -> None:
    assert decide([8.000000000000002] * 3).verdict is ACCEPT
    assert decide([7.999999999999998] * 3).verdict is ACCEPT
    assert decide([7.999999999999998, 8.0, 8.000000000000002]).verdict is ACCEPT


def test_mean_noise_from_five_reviewers() -> None:
    # 36+36+52+58+58 = 240 sixths: exactly μ = 8, but a naive float sum says 7.999999999999998
    scores = sixths(36, 36, 52, 58, 58)
    assert sum(scores) / len(scores) < 8  # the noise this test is about
    out = decide(scores)
    assert out.mean == 8.0
    assert out.verdict is ADJUDICATE  # σ is large; what matters is: not rejected


def test_std_noise_at_delta() -> None:
    # σ is exactly 1.5 for these panels, but naive float arithmetic lands on either side
    for panel in [(41, 59), (40, 58), (33, 49, 55, 55), (34, 50, 56, 56),
                  (28, 50, 52, 52, 53, 53)]:
        scores = sixths(*panel)
        out = decide(scores)
        assert out.std == 1.5, panel
        assert out.verdict is ACCEPT, panel


# --- σ convention, sizes -----------------------------------------------------------------


def test_population_standard_deviation() -> None:
    mean, std = mean_and_std([7.0, 9.0])
    assert (mean, std) == (8.0, 1.0)  # population; the sample std would be 1.414
    assert std == pytest.approx(statistics.pstdev([7.0, 9.0]))
    assert std != pytest.approx(statistics.stdev([7.0, 9.0]))
    # with δ = 1.2 the two conventions decide differently: population accepts
    assert decide([7.0, 9.0], delta=1.2).verdict is ACCEPT
    scores = [6.0, 8.5, 9.5, 10.0]
    assert mean_and_std(scores)[1] == pytest.approx(statistics.pstdev(scores), abs=1e-9)


def test_mean_and_std_are_rounded_to_nine_decimals() -> None:
    mean, std = mean_and_std(sixths(47, 50, 52))
    assert mean == round(mean, 9) and std == round(std, 9)
    assert mean == pytest.approx(149 / 18, abs=1e-9)


def test_single_reviewer() -> None:
    assert decide([8.0]).verdict is ACCEPT
    assert decide([8.0]).std == 0.0
    assert decide([10.0]).verdict is ACCEPT
    assert decide([7.5]).verdict is REJECT
    assert decide([six(8, 8, 8, 8, 8, 7)]).verdict is REJECT


def test_identical_scores_never_adjudicate() -> None:
    for s in (8.0, 9.0, 10.0):
        assert decide([s] * 7).verdict is ACCEPT


def test_empty_list_raises() -> None:
    with pytest.raises(ValueError, match="no scores"):
        decide([])
    with pytest.raises(ValueError):
        mean_and_std([])


def test_outcome_values_are_finite_floats() -> None:
    out = decide([0.0, 10.0])
    assert math.isfinite(out.mean) and math.isfinite(out.std)
    assert (out.mean, out.std, out.verdict) == (5.0, 5.0, REJECT)


# --- adjudicator -----------------------------------------------------------------------


def test_adjudicator_keeps_at_exactly_tau() -> None:
    assert adjudicator_keeps(8.0) is True
    assert adjudicator_keeps(six(7, 8, 9, 8, 8, 8)) is True
    assert adjudicator_keeps(8.000000000000002) is True
    assert adjudicator_keeps(7.999999999999998) is True  # float noise around τ is τ


def test_adjudicator_drops_below_tau() -> None:
    assert adjudicator_keeps(47 / 6) is False  # one point short on one of six scores
    assert adjudicator_keeps(7.9999) is False
    assert adjudicator_keeps(0.0) is False


def test_adjudicator_custom_tau() -> None:
    assert adjudicator_keeps(7.0, tau=7) is True
    assert adjudicator_keeps(6.99, tau=7) is False
    assert adjudicator_keeps(10.0, tau=10) is True


def test_weighted_decision_leans_on_trusted_reviewers() -> None:
    from gra_local.core.quality.decision import weighted_mean_and_std

    # An untrusted reviewer's 2 barely moves μ: (9·1 + 9·1 + 2·0.1) / 2.1
    out = decide([9.0, 9.0, 2.0], weights=[1.0, 1.0, 0.1])
    assert out.mean == pytest.approx(8.666666667) and out.std == pytest.approx(1.490711985)
    assert out.verdict is Verdict.ACCEPT  # weighted σ 1.49 ≤ δ
    assert decide([9.0, 9.0, 2.0]).verdict is Verdict.REJECT
    assert weighted_mean_and_std([8.0, 6.0], [1.0, 1.0]) == (7.0, 1.0)
    assert weighted_mean_and_std([8.0, 6.0], [0.0, 0.0]) == (7.0, 1.0)  # no trust: plain
    with pytest.raises(ValueError):
        weighted_mean_and_std([8.0], [1.0, 2.0])


def test_weighted_mean() -> None:
    from gra_local.core.quality.decision import weighted_mean_and_std

    def mean(scores: list[float], weights: list[float]) -> float:
        return weighted_mean_and_std(scores, weights)[0]

    scores = [9.0, 3.0, 6.0]
    assert mean(scores, [1.0, 0.5, 1.0]) == pytest.approx((9 + 1.5 + 6) / 2.5)
    assert mean(scores, [1.0, 1.0, 1.0]) == pytest.approx(6.0)
    assert mean(scores, [0.0, 0.0, 0.0]) == pytest.approx(6.0)  # no trust: plain mean
    assert mean([9.0, 7.0], [0.3, 0.3]) == pytest.approx(8.0)
    with pytest.raises(ValueError):
        weighted_mean_and_std([], [])
    with pytest.raises(ValueError):
        weighted_mean_and_std(scores, [-1.0, 1.0, 1.0])
