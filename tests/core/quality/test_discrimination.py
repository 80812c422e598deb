"""Pairwise discrimination of each piece of evidence on canary pairs: an original above its
corruption is right, a tie is half, no trust in the original is needed."""

from __future__ import annotations

import pytest

from gra_local.core.candidate import Candidate
from gra_local.core.quality.discrimination import Reading, discrimination, p_better, piece_values
from gra_local.core.records import InstructionVerdict, LikelihoodScore, RelevanceScore, Review
from gra_local.core.roles import RoleDraw


def pair(n: int, kind: str, original: dict[str, float], corrupted: dict[str, float]) -> list[Reading]:
    return [Reading(canary=f"o{n}", pair=f"c{n}", kind="good", values=original),
            Reading(canary=f"c{n}", pair=f"o{n}", kind=kind, values=corrupted)]


def test_accuracy_counts_wins_ties_half_and_splits_by_kind() -> None:
    readings = [*pair(1, "swapped", {"a": 9, "b": 5}, {"a": 2, "b": 5}),
                *pair(2, "truncated", {"a": 8, "b": 1}, {"a": 3, "b": 6}),
                *pair(3, "swapped", {"a": 1}, {"a": 7, "b": 2})]  # b has no value for o3
    found = discrimination(readings)
    assert found["a"].pairs == 3 and found["a"].accuracy == pytest.approx(2 / 3, abs=1e-4)
    assert found["a"].by_kind["swapped"].accuracy == 0.5
    assert found["a"].by_kind["truncated"].accuracy == 1.0
    assert found["b"].pairs == 2 and found["b"].accuracy == 0.25  # a tie and a loss


def test_unpaired_and_half_pairs_do_not_count() -> None:
    readings = [Reading(canary="g", pair=None, kind="good", values={"a": 9}),
                Reading(canary="c1", pair="gone", kind="swapped", values={"a": 1})]
    assert discrimination(readings) == {}


def test_p_better_is_a_beta_posterior() -> None:
    assert p_better(0, 0) == pytest.approx(0.5, abs=1e-6)
    assert p_better(10, 0) == pytest.approx(1 - 0.5 ** 11, abs=1e-5)  # Beta(11, 1)
    assert p_better(3, 3) == pytest.approx(0.5, abs=1e-6)
    assert p_better(2, 0) < 0.9 < p_better(8, 0)  # four canaries say little, sixteen more
    assert p_better(1.5, 0.5) + p_better(0.5, 1.5) == pytest.approx(1.0, abs=1e-6)


def test_a_judged_candidate_gives_each_piece_a_value() -> None:
    cand = Candidate.new(1, 1, 0, "math", [], RoleDraw("", ["r", "s", "r"], ["a"]))
    cand.reviews[0].verdict = InstructionVerdict(reasonable="pass", complete="fail", clear="pass")
    cand.reviews[0].score = 6.0
    cand.reviews[1].pass_probs = {"reasonable": 0.9, "complete": 0.6, "clear": 0.3}
    cand.reviews[1].verdict = InstructionVerdict(reasonable="pass", complete="pass", clear="fail")
    cand.reviews[2] = Review(model="r", score=8.0)
    cand.relevance = RelevanceScore(cosine=0.42, threshold=0.3)
    cand.likelihood = LikelihoodScore(model="r", tokens=5, mean_logprob=-1.5, pmi=0.4,
                                      end_logprob=None, low_tail=-6.0)
    values = piece_values(cand)
    assert values == {"reviewer r: scores": 7.0, "reviewer r: checks": pytest.approx(2 / 3),
                      "reviewer s: checks": pytest.approx(0.6), "relevance": 0.42,
                      "likelihood mean_logprob": -1.5, "likelihood pmi": 0.4,
                      "likelihood low_tail": -6.0}
