"""The calls per stage a run is expected to make (New run's plan): a pure function on the
ETA's acceptance assumption."""

from __future__ import annotations

from gra_local.core.engine.eta import ACCEPTANCE, expected_calls, expected_candidates


def test_calls_per_stage_follow_candidates_panel_and_pool() -> None:
    # 5 samples at 50% accepted: 10 candidates, under the cap of 20
    assert expected_candidates(5, 20) == 10 and ACCEPTANCE == 0.5
    assert expected_calls(5, 20, rounds=1, panel=3, seed_pool=64, canaries=4) == {
        "annotate": 64, "generate": 20, "review_a": 30, "review_b": 30, "adjudicate": 2,
        "canaries": 4}


def test_the_attempt_cap_and_rounds_bound_the_calls() -> None:
    calls = expected_calls(100, 12, rounds=2, panel=1, seed_pool=8)
    assert calls["generate"] == 2 * 2 * 12 and calls["review_a"] == 2 * 12
    assert calls["annotate"] == 8 and calls["canaries"] == 0


def test_canaries_go_into_every_batch() -> None:
    # 40 candidates in batches of 8: 5 batches of 2 canary pairs each
    assert expected_calls(20, 80, rounds=1, panel=3, seed_pool=1, canaries=2, batch=8)["canaries"] == 10
    # adaptive batches hold up to 256 candidates: one batch
    assert expected_calls(20, 80, rounds=1, panel=3, seed_pool=1, canaries=2)["canaries"] == 2
