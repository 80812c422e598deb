"""The calls per stage a run is expected to make (New run's plan, and the estimate a run
prints: one function): a pure function on the ETA's acceptance assumption."""

from __future__ import annotations

from gra_local.core.engine.eta import (
    ACCEPTANCE,
    Speed,
    expected_calls,
    expected_candidates,
    predict_stages,
)


def test_under_the_panel_judge_every_candidate_and_canary_is_reviewed() -> None:
    # 5 samples at 50% accepted: 10 candidates, under the cap of 20; one batch holds 4
    # canary pairs (8 sides), reviewed by the 3 reviewers like the candidates
    assert expected_candidates(5, 20) == 10 and ACCEPTANCE == 0.5
    assert expected_calls(5, 20, rounds=1, panel=3, seed_pool=64, canaries=4) == {
        "annotate": 64, "generate": 20, "review_a": 54, "review_b": 54, "adjudicate": 2}


def test_under_the_evidence_judge_the_panel_reads_only_the_canaries() -> None:
    # every candidate and canary side read once; each canary side asked of each distinct
    # reviewer, here one model standing for the panel of 3
    assert expected_calls(5, 20, rounds=1, panel=3, seed_pool=64, canaries=4, judge="evidence",
                          reviewers=1) == {
        "annotate": 64, "generate": 20, "review_a": 8, "review_b": 8, "likelihood": 18}
    assert expected_calls(5, 20, rounds=1, panel=3, seed_pool=64, canaries=4,
                          judge="evidence")["review_a"] == 24


def test_the_attempt_cap_and_rounds_bound_the_calls() -> None:
    calls = expected_calls(100, 12, rounds=2, panel=1, seed_pool=8)
    assert calls["generate"] == 2 * 2 * 12 and calls["review_a"] == 2 * 12
    assert calls["annotate"] == 8


def test_canaries_go_into_every_batch() -> None:
    # 40 candidates in batches of 8: 5 batches of 2 canary pairs each, 20 sides
    calls = expected_calls(20, 80, rounds=1, panel=1, seed_pool=1, canaries=2, batch=8)
    assert calls["review_a"] == 40 + 20
    # adaptive batches hold up to 256 candidates: one batch
    assert expected_calls(20, 80, rounds=1, panel=1, seed_pool=1, canaries=2)["review_a"] == 40 + 4


def test_the_estimate_counts_the_calls_the_plan_shows() -> None:
    speeds = {"a": Speed(400.0, 50.0, 0.5), "b": Speed(200.0, 25.0, 1.0)}
    for judge in ("panel", "evidence"):
        stages = predict_stages(speeds, 5, 20, 1, 3, 64, judge=judge, canaries=4, batch=8)
        plan = expected_calls(5, 20, 1, 3, 64, canaries=4, batch=8, judge=judge, reviewers=2)
        assert {stage: calls for stage, (calls, _) in stages.items() if stage != "loads"} == plan
