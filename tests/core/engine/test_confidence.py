"""Confidence routing and weighted vetoes in runs (scripted backend whose replies carry
token choices as a sure, or unsure, model would report them)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fakes import PASS, Call, FakeBackend, certain, scores
from test_scheduler import decided, records, run

from gra_local.core.backend import TokenChoice
from gra_local.core.engine.confidence import FIRST_SLOTS

NAMES = ["a", "b", "c", "d", "e"]


def probes(spread: float) -> FakeBackend:
    return FakeBackend(probes=lambda call, text: certain(text, spread))


def data(out: Path) -> list[dict]:
    return records(out, "accepted.jsonl") + records(out, "rejected.jsonl")


def test_sure_first_reviewers_stop_the_panel_early(tmp_path: Path) -> None:
    result, backend = run(tmp_path / "out", NAMES, probes(0.0), samples=4)
    recs = data(tmp_path / "out")
    assert recs and all(r["decision"] == "accepted" for r in recs)
    for rec in recs:
        scored = [rv for rv in rec["reviews"] if rv["score"] is not None]
        assert len(scored) == FIRST_SLOTS and [rv["skipped"] for rv in rec["reviews"]] == [False, False, True]
        assert all(rv["score_probs"]["correctness"] == {"9": 1.0} for rv in scored)
        assert all(rv["pass_probs"] == {"reasonable": 1.0, "complete": 1.0, "clear": 1.0}
                   for rv in rec["reviews"])
    routing = result.run_json.routing
    # counted per candidate reviewed (a batch may review more than the samples it keeps)
    assert routing is not None and routing.stopped_early >= len(recs) and routing.extra_reviewers == 0
    review_b = [c for c in backend.calls if c.role == "review_b"]
    assert len(review_b) == FIRST_SLOTS * routing.stopped_early  # one call saved per candidate


def test_an_unsure_panel_asks_one_more_reviewer(tmp_path: Path) -> None:
    # each criterion 9 with p 0.9, else 0: P(all six 9) = 0.53, a coin flip on accept
    result, _ = run(tmp_path / "out", NAMES, probes(0.1), samples=3)
    recs = data(tmp_path / "out")
    assert recs
    for rec in recs:
        assert [rv["extra"] for rv in rec["reviews"]] == [False, False, False, True]
        extra = rec["reviews"][-1]
        assert extra["verdict"] is None and extra["score"] is not None
        assert extra["model"] not in [rv["model"] for rv in rec["reviews"][:3]] + [rec["generator"]]
        assert rec["reviews"][0]["score"] == rec["reviews"][0]["sampled_score"] * 0.9
    routing = result.run_json.routing
    assert routing is not None and routing.extra_reviewers >= len(recs) and routing.stopped_early == 0


def test_replies_without_probabilities_are_never_routed(tmp_path: Path) -> None:
    result, backend = run(tmp_path / "out", NAMES, samples=3)
    recs = data(tmp_path / "out")
    assert recs and all(len(r["reviews"]) == 3 and all(rv["score"] is not None for rv in r["reviews"])
                        for r in recs)
    assert all(rv["score_probs"] is None and rv["score"] == rv["sampled_score"]
               for r in recs for rv in r["reviews"])
    assert result.run_json.routing is not None and result.run_json.routing.stopped_early == 0
    assert all(c.request.probe_after for c in backend.calls if c.role in ("review_a", "review_b"))


def test_routing_off_asks_the_whole_panel(tmp_path: Path) -> None:
    result, _ = run(tmp_path / "out", NAMES, probes(0.0), samples=3, routing=False)
    recs = data(tmp_path / "out")
    assert recs and all(not rv["skipped"] and rv["score"] is not None
                        for r in recs for rv in r["reviews"])
    assert result.run_json.routing is None


def test_a_routed_run_stopped_and_resumed_equals_a_straight_one(tmp_path: Path) -> None:
    def mixed(call: Call, text: str) -> list[TokenChoice]:
        return certain(text, 0.1 if call.request.seed % 2 else 0.0)  # some sure, some not

    straight, _ = run(tmp_path / "straight", NAMES, FakeBackend(probes=mixed), samples=5)
    out = tmp_path / "resumed"
    first, _ = run(out, NAMES, FakeBackend(probes=mixed, stop_after=30), samples=5)
    assert first.status == "interrupted"
    second, _ = run(out, NAMES, FakeBackend(probes=mixed), samples=5)
    assert second.status == "complete" and decided(out) == decided(tmp_path / "straight")
    assert second.run_json.routing == straight.run_json.routing


def c_fails_everything(call: Call) -> dict | None:
    """c fails every instruction; a and b pass, and score canaries by nothing but 9."""
    if call.role == "review_a":
        return {"reasonable": "fail", "complete": "pass", "clear": "pass"} if call.model == "c" else PASS
    if call.role == "review_b":
        return scores(9)
    return None


def test_a_veto_from_a_reviewer_at_chance_does_not_reject_alone(tmp_path: Path) -> None:
    go = partial(run, names=["a", "b", "c"], canaries=8, batch=2, samples=3, max_attempts=4,
                 judge="panel")
    weighted, _ = go(tmp_path / "weight", backend=FakeBackend(script=c_fails_everything))
    cal = weighted.run_json.calibration
    assert cal is not None and cal.reviewers["c"].weight == 0.1
    recs = data(tmp_path / "weight")
    with_c = [r for r in recs if "c" in r["reviewers"]]
    assert with_c and all(r["reason"] != "instruction_failed" for r in with_c)
    for rec in with_c:
        c = next(rv for rv in rec["reviews"] if rv["model"] == "c")
        assert c["verdict"]["reasonable"] == "fail" and c["weight"] == 0.1
    flagged, _ = go(tmp_path / "flag", backend=FakeBackend(script=c_fails_everything),
                    calibration="flag")
    with_c = [r for r in data(tmp_path / "flag") if "c" in r["reviewers"]]
    assert with_c and all(r["reason"] == "instruction_failed" for r in with_c)
    assert all(r["reason_detail"].startswith("c failed the instruction") for r in with_c)
