"""Role draws (docs/method.md): random generator, panel without it, fresh adjudicator."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from gra_local.core.roles import RoleDraw, draw_roles

FIVE = ["m1", "m2", "m3", "m4", "m5"]


def draw(models: list[str], panel: int = 3, seed: int = 0) -> RoleDraw:
    return draw_roles(random.Random(seed), models, models, models, panel)


def test_one_model_plays_every_role() -> None:
    for seed in range(20):
        d = draw(["solo"], seed=seed)
        assert d.generator == "solo"
        assert d.panel == ["solo"] * 3
        assert d.adjudicators == ["solo"]
        assert d.shared is True
        assert set(d.replacements) == {"solo"}


def test_one_model_panel_of_one() -> None:
    d = draw(["solo"], panel=1)
    assert (d.generator, d.panel, d.shared) == ("solo", ["solo"], True)


def test_two_models_repeat_as_little_as_possible() -> None:
    for seed in range(50):
        d = draw(["a", "b"], seed=seed)
        other = "b" if d.generator == "a" else "a"
        assert d.panel[0] == other  # the model that is not the generator reviews first
        # four slots (generator + 3 reviewers) over two models: two each
        assert Counter([d.generator, *d.panel]) == Counter({"a": 2, "b": 2})
        assert sorted(d.adjudicators) == ["a", "b"]
        assert d.shared is True


def test_two_models_panel_of_one_is_not_shared_for_review() -> None:
    for seed in range(20):
        d = draw(["a", "b"], panel=1, seed=seed)
        assert d.panel != [d.generator]
        # no third model for the adjudicator: shared
        assert d.shared is True


def test_five_models_panel_of_three() -> None:
    for seed in range(200):
        d = draw(FIVE, seed=seed)
        assert d.generator in FIVE
        assert d.generator not in d.panel
        assert len(d.panel) == 3 and len(set(d.panel)) == 3
        assert set(d.panel) <= set(FIVE)
        first = d.adjudicators[0]
        assert first != d.generator and first not in d.panel
        assert sorted(d.adjudicators) == sorted(FIVE)  # the rest follow as fallbacks
        assert d.shared is False
        # on a failed reviewer the unused model comes first, the generator last
        assert d.replacements[0] == first
        assert d.replacements[-1] == d.generator


def test_four_models_panel_of_three_has_no_fresh_adjudicator() -> None:
    d = draw(FIVE[:4])
    assert d.generator not in d.panel and len(set(d.panel)) == 3
    assert d.shared is True


def test_role_subsets_are_respected() -> None:
    for seed in range(50):
        d = draw_roles(random.Random(seed), generators=["g1", "g2"], reviewers=["r1", "r2", "r3", "g1"],
                       adjudicators=["j1", "r1"], panel_size=3)
        assert d.generator in {"g1", "g2"}
        assert set(d.panel) <= {"r1", "r2", "r3", "g1"} and d.generator not in d.panel
        if "r1" in d.panel:
            assert d.adjudicators[0] == "j1"


def test_generator_that_is_the_only_reviewer() -> None:
    for seed in range(10):
        d = draw_roles(random.Random(seed), ["a", "b"], ["a"], ["b"], 2)
        assert d.panel == ["a", "a"]  # the only reviewer repeats, even if it generated
        assert d.shared is True


@pytest.mark.parametrize("args", [
    ([], ["a"], ["a"]), (["a"], [], ["a"]), (["a"], ["a"], []),
])
def test_a_role_without_models_raises(args) -> None:
    with pytest.raises(ValueError):
        draw_roles(random.Random(0), *args, 3)


def test_draws_are_deterministic_for_a_seed() -> None:
    for seed in range(10):
        assert draw(FIVE, seed=seed) == draw(FIVE, seed=seed)
    # independent of the order models are listed in
    assert draw(FIVE, seed=3) == draw(list(reversed(FIVE)), seed=3)
    many = {(draw(FIVE, seed=s).generator, *draw(FIVE, seed=s).panel) for s in range(30)}
    assert len(many) > 10  # different seeds give different draws


def test_sequence_of_draws_is_deterministic() -> None:
    def sequence(seed: int) -> list[RoleDraw]:
        rng = random.Random(seed)
        return [draw_roles(rng, FIVE, FIVE, FIVE, 3) for _ in range(20)]

    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)


def test_generator_is_uniform() -> None:
    rng = random.Random(12345)
    n = 2000
    gens: Counter[str] = Counter()
    reviewers: Counter[str] = Counter()
    adjudicators: Counter[str] = Counter()
    for _ in range(n):
        d = draw_roles(rng, FIVE, FIVE, FIVE, 3)
        gens[d.generator] += 1
        reviewers.update(d.panel)
        adjudicators[d.adjudicators[0]] += 1
    for name in FIVE:
        assert 0.15 * n <= gens[name] <= 0.25 * n, gens
        # each model sits on 3 of 5 panels and adjudicates 1 of 5 samples on average
        assert 0.52 * n <= reviewers[name] <= 0.68 * n, reviewers
        assert 0.15 * n <= adjudicators[name] <= 0.25 * n, adjudicators
