"""CanaryBook's calibration, per-score weights under each action, on fixed judgements."""

from __future__ import annotations

from pathlib import Path

import pytest

from gra_local.core.options import RunOptions
from gra_local.core.quality.calibration import CanaryJudgement
from gra_local.core.quality.canary_flow import CanaryBook
from gra_local.core.quality.discrimination import Reading
from gra_local.core.records import CanaryKind


def judgements(reviewer: str, correct: int, wrong: int) -> list[CanaryJudgement]:
    """Good canaries: `correct` scored 9 (right), `wrong` scored 2 (wrong)."""
    scores = [9.0] * correct + [2.0] * wrong
    return [CanaryJudgement(reviewer=reviewer, canary_id=f"{reviewer}{i}", kind=CanaryKind.GOOD,
                            expected_good=True, instruction_passed=True, score=s)
            for i, s in enumerate(scores)]


def book(tmp_path: Path, action: str) -> CanaryBook:
    out = CanaryBook(tmp_path, RunOptions(samples=1, canaries=4, calibration=action,
                                          min_canary_accuracy=0.6))
    # sharp 4/4, lenient 2/4 (flagged), shaky 3/4
    out.judgements = judgements("sharp", 4, 0) + judgements("lenient", 2, 2) + \
        judgements("shaky", 3, 1)
    out.refresh()
    return out


def test_weight_uses_canary_accuracy_and_one_for_unknown_reviewers(tmp_path: Path) -> None:
    weights = book(tmp_path, "weight").calibration().score_weights(["sharp", "lenient", "shaky", "new", "sharp"])
    # good canaries only, smoothed: BA (5/6 + 1/2) / 2, (3/6 + 1/2) / 2, (4/6 + 1/2) / 2
    assert weights == [0.333333, 0.1, 0.166667, 1.0, 0.333333]


def test_drop_zeroes_flagged_reviewers_but_never_all(tmp_path: Path) -> None:
    b = book(tmp_path, "drop")
    assert b.calibration().score_weights(["sharp", "lenient", "sharp", "new"]) == [1.0, 0.0, 1.0, 1.0]
    assert b.calibration().score_weights(["lenient", "lenient"]) is None  # every score flagged: all count
    assert b.calibration().score_weights(["sharp", "shaky"]) == [1.0, 1.0]


def test_flag_and_no_canaries_leave_scores_unweighted(tmp_path: Path) -> None:
    assert book(tmp_path, "flag").calibration().score_weights(["sharp", "lenient"]) is None
    off = CanaryBook(tmp_path, RunOptions(samples=1, canaries=0, calibration="drop"))
    off.refresh()
    assert off.calibration().score_weights(["sharp"]) is None


def test_review_mode_does_not_punish_a_reviewer_that_rejects_bad_input_pairs(tmp_path: Path) -> None:
    """In `review` the originals are the input's own pairs. `strict` scores the two bad
    input pairs (and their corruptions) 2 and the two good ones 9 (their corruptions 2):
    absolute accuracy counts the two bad originals as good canaries it got wrong; its pairs
    count them as ties, never as losses."""
    rows = []
    for n, original in enumerate([9.0, 9.0, 2.0, 2.0]):
        rows += [Reading(canary=f"o{n}", pair=None, kind="good",
                         values={"reviewer strict: scores": original}),
                 Reading(canary=f"c{n}", pair=f"o{n}", kind="swapped",
                         values={"reviewer strict: scores": 2.0})]
    marks = judgements("strict", 2, 2)  # the absolute view: 2 of 4 good canaries wrong

    def weight(trusted: bool) -> float:
        b = CanaryBook(tmp_path, RunOptions(samples=1, canaries=4), trusted=trusted)
        b.made, b.judgements, b.readings = 8, list(marks), list(rows)
        b.refresh()
        return b.calibration().even_or_weights(["strict"])[0]

    assert weight(trusted=True) == 0.1  # at the floor: 2 of 4 "good" ones rejected
    assert weight(trusted=False) == pytest.approx(2 * (3 + 1) / 6 - 1, abs=1e-6)  # 2 wins, 2 ties
