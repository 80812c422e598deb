"""The relevance check's pure rule (threshold from good and swapped scores), its swap
partners and calibration line, and the real all-MiniLM-L6-v2 on the example seeds."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS

from gra_local.core.quality.canaries import CanarySource
from gra_local.core.quality.relevance import (
    MIN_GOOD,
    Relevance,
    calibration_line,
    choose_threshold,
    swapped_pairs,
    vetoes,
)


def test_threshold_separates_the_two_lists() -> None:
    found = choose_threshold([0.5, 0.6, 0.7, 0.8], [0.1, 0.2, 0.3])
    assert found is not None
    # 0.5 passes every good pair and vetoes every bad one; no lower value does both
    assert found.value == 0.5 and found.balanced_accuracy == 1.0
    assert (found.good, found.bad) == (4, 3)


def test_ties_go_to_the_lower_threshold() -> None:
    # t=0.3: good 4/4 passed, bad 1/2 vetoed → 0.75; t=0.4: good 3/4, bad 2/2 → 0.875;
    # t=0.5: good 2/4, bad 2/2 → 0.75. Overlap: 0.4 wins alone.
    found = choose_threshold([0.3, 0.4, 0.5, 0.6], [0.2, 0.35])
    assert found is not None and found.value == 0.4 and found.balanced_accuracy == 0.875
    # two thresholds equally good (0.2 and 0.4, both 0.75): the lower one, fewer vetoes
    tied = choose_threshold([0.2, 0.2, 0.4, 0.4], [0.1, 0.3])
    assert tied is not None and tied.value == 0.2 and tied.balanced_accuracy == 0.75


def test_all_equal_scores_veto_nothing() -> None:
    found = choose_threshold([0.4] * 5, [0.4, 0.4])
    assert found is not None and found.value == 0.4 and found.balanced_accuracy == 0.5
    assert not vetoes(0.4, found.value)


def test_too_few_good_pairs_or_no_bad_one_turns_it_off() -> None:
    assert choose_threshold([0.9] * (MIN_GOOD - 1), [0.1, 0.2]) is None
    assert choose_threshold([0.9] * MIN_GOOD, []) is None
    assert choose_threshold([0.9] * MIN_GOOD, [0.1]) is not None


def test_rounding_decides_equality() -> None:
    assert not vetoes(0.21004, 0.21)  # both 0.21 at 4 decimals: equal passes
    assert vetoes(0.20994, 0.21)


def test_swaps_take_the_next_different_answer() -> None:
    src = [CanarySource(id=str(i), instruction=f"q{i}", response=r)
           for i, r in enumerate(["a", "a", "b"])]
    # q0 skips q1 (same answer) for q2; q1 likewise; q2 takes q0's
    assert swapped_pairs(src) == [("q0", "b"), ("q1", "b"), ("q2", "a")]
    assert swapped_pairs(src[:2]) == []  # one answer only: no swap possible


def test_calibration_line_counts_right_and_wrong() -> None:
    line = calibration_line([(True, 0.5, 0.3), (True, 0.2, 0.3), (False, 0.1, 0.3),
                             (False, 0.3, 0.3)])
    assert line is not None and line.model == "relevance"
    assert (line.canaries, line.correct, line.accuracy) == (4, 2, 0.5)
    assert line.mean_canary_good_score == pytest.approx(0.35)
    assert line.mean_canary_bad_score == pytest.approx(0.2)
    assert calibration_line([]) is None


def test_minilm_separates_good_pairs_from_swapped_ones(minilm, tmp_path: Path) -> None:
    rows = [orjson.loads(line) for line in EXAMPLE_SEEDS.read_bytes().splitlines()]
    sources = [CanarySource(id=f"seed line {n}", response=r["output"], domain=r["domain"],
                            instruction=r["instruction"] + (f"\n\n{r['input']}" if r["input"] else ""))
               for n, r in enumerate(rows, 1)]
    check = Relevance(minilm, None, tmp_path)
    found = check.calibrate(sources)
    assert found is not None and found.good == len(sources) == found.bad
    assert found.balanced_accuracy >= 0.8 and 0.0 < found.value < 1.0
    first = sources[0]  # factorial code; its swap partner is the len() explanation
    good, swapped = check.cosines([(first.instruction, first.response),
                                   (first.instruction, sources[1].response)])
    assert not vetoes(good, found.value) and vetoes(swapped, found.value)
    assert swapped_pairs(sources)[0] == (first.instruction, sources[1].response)
