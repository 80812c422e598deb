"""Expected scores from token choices: digits, the ambiguous "1", spaces carried by a
token, coverage, pass probabilities, and P(accept) by convolution."""

from __future__ import annotations

import math

import pytest

from gra_local.core.backend import TokenChoice
from gra_local.core.quality.expected import (
    MIN_COVERED,
    ScoreDistribution,
    accept_probability,
    pass_probabilities,
    pass_probability,
    score_distribution,
    score_distributions,
)
from gra_local.core.records import SCORE_FIELDS

TEXT = '{"correctness": 8, "clarity": 10, "feedback": "ok"}'
AT_8 = TEXT.index("8")
AT_10 = TEXT.index("10")


def test_digit_tokens_give_the_expected_value() -> None:
    choices = [TokenChoice(offset=AT_8, probs={"8": 0.5, "9": 0.25, "7": 0.25})]
    dist = score_distribution(TEXT, choices, "correctness")
    assert dist is not None and dist.probs == {7: 0.25, 8: 0.5, 9: 0.25}
    assert dist.expected == 8.0


def test_a_chosen_one_splits_into_one_and_ten_by_the_next_digit() -> None:
    choices = [TokenChoice(offset=AT_10, probs={"1": 0.6, "9": 0.4}),
               TokenChoice(offset=AT_10 + 1, probs={"0": 0.75, ",": 0.25})]
    dist = score_distribution(TEXT, choices, "clarity")
    assert dist is not None
    assert dist.probs == pytest.approx({1: 0.15, 9: 0.4, 10: 0.45})
    assert dist.expected == pytest.approx(0.15 + 3.6 + 4.5)


def test_an_unresolved_one_is_left_out_and_the_rest_renormalized() -> None:
    choices = [TokenChoice(offset=AT_8, probs={"8": 0.6, "1": 0.3, "5": 0.1})]
    dist = score_distribution(TEXT, choices, "correctness")  # "8" chosen: 1 or 10 unknown
    assert dist is not None and dist.probs == pytest.approx({5: 0.1 / 0.7, 8: 0.6 / 0.7})
    mostly_one = [TokenChoice(offset=AT_8, probs={"8": 0.3, "1": 0.7})]
    assert 0.3 < MIN_COVERED and score_distribution(TEXT, mostly_one, "correctness") is None


def test_a_token_carrying_the_space_is_read_from_the_colon_probe() -> None:
    colon = TEXT.index(":") + 1  # `"correctness":` then the token " 8"
    choices = [TokenChoice(offset=colon, probs={" 8": 0.5, " 6": 0.4, " ": 0.1})]
    dist = score_distribution(TEXT, choices, "correctness")
    assert dist is not None and dist.probs == pytest.approx({6: 0.4 / 0.9, 8: 0.5 / 0.9})


def test_the_last_probe_before_the_value_wins() -> None:
    colon = TEXT.index(":") + 1
    choices = [TokenChoice(offset=colon, probs={" ": 0.9, " 3": 0.1}),
               TokenChoice(offset=AT_8, probs={"8": 1.0})]
    dist = score_distribution(TEXT, choices, "correctness")
    assert dist is not None and dist.probs == {8: 1.0}


def test_all_six_or_none() -> None:
    text = "{" + ", ".join(f'"{f}": 7' for f in SCORE_FIELDS) + ', "feedback": ""}'
    choices = [TokenChoice(offset=i + 1, probs={"7": 0.5, "9": 0.5})
               for i in range(len(text)) if text.startswith('": 7', i - 2)]
    dists = score_distributions(text, choices)
    assert dists is not None and set(dists) == set(SCORE_FIELDS)
    assert all(d.expected == 8.0 for d in dists.values())
    assert score_distributions(text, choices[:-1]) is None
    assert score_distributions(text, []) is None


def test_pass_probability_counts_prefixes_of_pass_and_fail() -> None:
    text = '{"reasonable": "pass", "complete": "fail", "clear": "pass"}'
    q = [i for i in range(len(text)) if text.startswith('": "', i - 4)]
    choices = [TokenChoice(offset=q[0], probs={"p": 0.6, "pass": 0.2, "fa": 0.2}),
               TokenChoice(offset=q[1], probs={"fail": 1.0}),
               TokenChoice(offset=q[2], probs={"pa": 0.5, "f": 0.5})]
    assert pass_probability(text, choices, "reasonable") == pytest.approx(0.8)
    assert pass_probabilities(text, choices) == pytest.approx(
        {"reasonable": 0.8, "complete": 0.0, "clear": 0.5})
    assert pass_probabilities(text, choices[:2]) is None


def test_accept_probability_is_the_chance_the_mean_reaches_tau() -> None:
    sure = {f: ScoreDistribution({9: 1.0}) for f in SCORE_FIELDS}
    assert accept_probability(sure, 8.0) == 1.0
    coin = {f: ScoreDistribution({7: 0.5, 9: 0.5}) for f in SCORE_FIELDS}
    # mean ≥ 8 ⇔ at least three of six criteria are 9: P = (20 + 15 + 6 + 1) / 64
    assert accept_probability(coin, 8.0) == pytest.approx(42 / 64)
    assert math.isclose(accept_probability(coin, 9.5), 0.0)
