"""Reviewer weights from balanced canary accuracy, and the weighted veto."""

from __future__ import annotations

import pytest

from gra_local.core.quality.decision import VETO_LEVEL, weighted_veto
from gra_local.core.quality.weights import W_MIN, balanced_accuracy, reviewer_weight


def test_balanced_accuracy_is_smoothed_per_class() -> None:
    assert balanced_accuracy(4, 4, 4, 4) == pytest.approx(5 / 6)
    assert balanced_accuracy(0, 0, 0, 0) == 0.5  # nothing judged: chance


def test_weight_is_chance_corrected_and_floored() -> None:
    assert reviewer_weight(8, 8, 8, 8) == pytest.approx(0.8, abs=1e-6)  # 2 · 0.9 − 1
    assert reviewer_weight(0, 4, 4, 4) == W_MIN  # rejects everything: at chance
    assert reviewer_weight(4, 4, 0, 4) == W_MIN  # passes everything: at chance
    assert reviewer_weight(0, 4, 0, 4) == W_MIN  # always wrong: below chance, floored


def test_a_strong_reviewer_vetoes_alone_and_reviewers_at_chance_never() -> None:
    strong = weighted_veto([("judge", 0.8, ["clear"]), ("other", 0.8, [])])
    assert strong.rejected and strong.strength == 0.8
    assert "judge (weight 0.80) on clear" in strong.detail and "≥ 0.5" in strong.detail
    chance = weighted_veto([(m, W_MIN, ["reasonable"]) for m in "abc"])
    assert not chance.rejected and chance.strength == pytest.approx(0.3)
    pair = weighted_veto([("a", 0.3, ["complete"]), ("b", 0.25, ["clear"]), ("c", 0.9, [])])
    assert pair.rejected and pair.strength == pytest.approx(0.55) and pair.strength >= VETO_LEVEL
    assert not weighted_veto([("a", 1.0, [])]).rejected
