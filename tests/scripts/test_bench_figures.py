"""What each scripts/bench_*.py headline compares, on figures made by hand (fast, no model
but the tiny test GGUF): no ratio when a side is 0 (nothing smoothed), both sides' tokens
counted by the same tokenizer, medians of repeated runs, tokens/s rather than seconds or
calls, the same threads on both sides, a figure name that says the size measured. The
benches' --quick runs are in test_benches.py (marked `bench`)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import bench_decode as bd  # noqa: E402
import bench_dedup as bdd  # noqa: E402
import bench_endpoints as be  # noqa: E402
import bench_overhead as bo  # noqa: E402
import bench_vs_distilabel as bvd  # noqa: E402
import benchlib  # noqa: E402
from test_benches import figure  # noqa: E402

# --- benchlib ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ours", "theirs", "why"), [
    (1.0, 0.0, "theirs is 0"), (0.0, 2.0, "ours is 0"), (0.0, 0.0, "ours is 0"),
    (math.nan, 1.0, "ours is not a number"), (1.0, math.inf, "theirs is not a number")])
def test_no_ratio_when_a_side_is_zero(ours: float, theirs: float, why: str) -> None:
    assert benchlib.ratio(ours, theirs) == (None, why)


def test_ratio_and_its_figure_line() -> None:
    assert benchlib.ratio(3.0, 2.0) == (1.5, "")
    assert figure(benchlib.figure_line("x_ratio", 1.5, extra="b=2")) == ("x_ratio", 1.5)
    line = benchlib.figure_line("x_ratio", None, "theirs is 0", extra="b=2")
    assert line == "x_ratio=n/a b=2  (theirs is 0)"
    assert figure(line) == ("x_ratio", None)


# --- bench_vs_distilabel -------------------------------------------------------------------------


def side(name: str, judged: int, wall: float, valid: int = 3, calls: int = 3) -> dict[str, Any]:
    return {"side": name, "judged": judged, "accepted": judged, "wall": wall,
            "judge_valid": valid, "judge_calls": calls}


def test_vs_distilabel_gives_no_ratio_when_a_side_judged_nothing() -> None:
    """1 judged against 0 once made 3.36 (both +0.5): now n/a, and the line says why."""
    cmp = bvd.compare(side("gra-local", 1, 60.0), side("distilabel", 0, 50.0, valid=0))
    assert cmp["judged_per_hour_ratio"] is None
    assert "distilabel judged no sample (0 of 3" in cmp["why"]
    name, value = figure(bvd.figure(cmp))
    assert (name, value) == ("judged_per_hour_ratio", None)
    assert "valid_ours=1.000 valid_theirs=0.000" in bvd.figure(cmp)


def test_vs_distilabel_ratio_is_judged_samples_per_hour() -> None:
    ours, theirs = side("gra-local", 2, 60.0), side("distilabel", 4, 240.0, valid=6, calls=12)
    cmp = bvd.compare(ours, theirs)
    assert cmp["judged_per_hour_ratio"] == pytest.approx((2 / 60) / (4 / 240))
    assert ours["judged_per_hour"] == pytest.approx(120.0)
    assert cmp["valid_theirs"] == pytest.approx(0.5)
    assert figure(bvd.figure(cmp)) == ("judged_per_hour_ratio", pytest.approx(2.0, abs=1e-3))
    skipped = bvd.compare(side("gra-local", 2, 60.0), None, "no venv")
    assert skipped["judged_per_hour_ratio"] is None and "skipped" in skipped["why"]


def review(verdict: bool, scores: bool) -> dict[str, Any]:
    return {"model": "m", "verdict": {"clear": "pass"} if verdict else None,
            "scores": {"correctness": 9} if scores else None}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_vs_distilabel_reads_our_run_counting_canaries_on_both_sides(tmp_path: Path) -> None:
    """Panel calls: a sample's 3 checks + 3 scores + a retry, 2 canaries' 2 + 2 (one canary
    reply invalid); an evidence reject never asked the panel; an unverified sample is not
    judged. Canary outputs count in the valid ones as their calls count in the calls."""
    write_jsonl(tmp_path / "accepted.jsonl", [
        {"reason": "accepted", "reviews": [review(True, True), review(True, True), review(True, False)],
         "adjudication": None}])
    write_jsonl(tmp_path / "rejected.jsonl", [
        {"reason": "evidence_reject", "reviews": [review(False, False)] * 3, "adjudication": None}])
    write_jsonl(tmp_path / "unverified.jsonl", [
        {"reason": "unverified", "reviews": [review(False, False)] * 3, "adjudication": None}])
    write_jsonl(tmp_path / "canaries.jsonl", [
        {"judgements": [{"instruction_passed": True, "score": 8.5}]},
        {"judgements": [{"instruction_passed": False, "score": None}]}])
    stages = {"review_a": {"calls": 5}, "review_b": {"calls": 5}, "likelihood": {"calls": 5}}
    (tmp_path / "run.json").write_text(json.dumps({
        "counts": {"accepted": 1, "attempts": 3, "by_reason": {}},
        "stats": {"models": {"m": {"load_seconds": 1.0, "calls": 20, "invalid_replies": {}}},
                  "stages": stages},
        "calibration": {"decided_by": "the cheap evidence", "panel_not_asked": 3},
        "likelihood": {"scored": 5}, "loads": {"m": 1}, "timings": {},
        "config": {"options": {"judge": "evidence"}}}))
    ours = bvd.read_ours(tmp_path)
    assert (ours["judged"], ours["judged_by_panel"], ours["judged_by_evidence"]) == (2, 1, 1)
    assert ours["judge_calls"] == 10  # review A + review B, canaries and the retry included
    assert ours["judge_valid"] == 5 + 3  # the sample's 5 outputs + the canaries' 3
    assert ours["judge_valid_canaries"] == 3
    assert (ours["likelihood_scored"], ours["likelihood_calls"]) == (5, 5)
    assert ours["decided_by"] == "the cheap evidence" and ours["panel_not_asked"] == 3
    assert ours["panel_slots_without_reply"] == 6


def test_vs_distilabel_reads_theirs() -> None:
    ok = {"raw_output_judge": "Rating: 4\nRationale: fine", "statistics_judge": {"output_tokens": 9}}
    echoed = {"raw_output_judge": "Rating: [Rating for text 1]\nRationale: x",
              "statistics_judge": {"output_tokens": 9}}
    cut = {"raw_output_judge": "Rating: 5\nRationale: long", "statistics_judge": {"output_tokens": 256}}
    rows = [{"distilabel_metadata": [ok, ok, echoed]}, {"distilabel_metadata": [echoed, cut, cut]}]
    events = [{"event": "call", "step": "judge", "seconds": 1.0, "finish_reason": "stop",
               "completion_tokens": 9, "max_tokens": 256}] * 6
    theirs = bvd.read_theirs(rows, events, limit=256)
    assert (theirs["judged"], theirs["accepted"], theirs["attempts"]) == (1, 1, 2)
    assert (theirs["judge_valid"], theirs["judge_calls"]) == (2, 6)
    assert theirs["parsed_false"] == 4  # echoed and cut: distilabel's parser reads a number


# --- bench_decode --------------------------------------------------------------------------------


def runs(*per_setting: list[tuple[int, float]]) -> dict[int, list[dict[str, Any]]]:
    return {n: [{"tokens": t, "seconds": s} for t, s in rs]
            for n, rs in zip((1, 2, 4), per_setting, strict=False)}


def test_batch_speedup_takes_medians_not_a_lucky_run() -> None:
    speedup, best, _ = bd.batch_speedup(runs([(100, 10.0)] * 3, [(100, 2.0), (100, 12.0), (100, 12.0)]))
    assert (best, speedup) == (1, 1.0)  # one fast run at n_parallel 2 is not its figure


def test_batch_speedup_is_tokens_per_second_not_wall_time() -> None:
    """The same wall time for twice the text is twice the speed."""
    speedup, best, medians = bd.batch_speedup(runs([(100, 10.0)] * 3, [(200, 10.0)] * 3))
    assert (best, speedup) == (2, 2.0)
    assert medians == {1: 10.0, 2: 20.0}


def test_decode_sides_count_the_same_tokens(tiny_gguf: Path) -> None:
    """Greedy, the same requests: both sides make the same texts, counted by one tokenizer
    (not streamed chunks on one side and completion_tokens on the other); a request one
    side does not decode (the tiny model's long byte-token prompts leave our worker no
    room for the draft and annotation budgets: too_long) counts on neither side."""
    count = benchlib.TokenCounter(tiny_gguf)
    seeds = [s for s in benchlib.load_seeds() if s.response][:1]
    fig = bd.one_sequence(tiny_gguf, 1, seeds, 8, count, n_ctx=2048)
    for kind in ("free", *bd.STEPS):
        raw, ours = fig[kind]["raw"], fig[kind]["ours"]
        assert raw["texts"] == ours["texts"], kind
        assert raw["tokens"] == ours["tokens"] == sum(count(t) for t in raw["texts"]), kind
        assert len(raw["texts"]) + fig[kind]["left_out"] == 1
    assert fig["free"]["left_out"] == fig["verdict"]["left_out"] == fig["scores"]["left_out"] == 0
    assert fig["verdict"]["ours"]["tokens"] > 0 and fig["verdict"]["ours"]["seconds"] > 0
    assert bd.pooled(fig, tuple(bd.STEPS), "ours") > 0


# --- bench_endpoints ------------------------------------------------------------------------------


def test_endpoint_setups_use_the_same_threads(tmp_path: Path) -> None:
    one = [be.threads_each(2, 1)]
    two = [be.threads_each(2, 2)] * 2
    assert sum(one) == sum(two) == 2
    cmd = be.Server(tmp_path / "m.gguf", 1, tmp_path / "log", 0, threads=one[0]).command()
    assert cmd[cmd.index("--n_threads") + 1] == cmd[cmd.index("--n_threads_batch") + 1] == "2"
    with pytest.raises(ValueError):
        be.threads_each(3, 2)


def test_endpoint_scale_is_tokens_per_second() -> None:
    """Two servers making more (shorter) calls for the same tokens in the same time: 1.0."""
    one = be.Phase("1 server", ["u"], 4, 2, review_s=10.0, calls=16, completion_tokens=800)
    two = be.Phase("2 servers", ["u", "v"], 2, 1, review_s=10.0, calls=20, completion_tokens=800)
    assert be.scale(one, two) == (1.0, "")
    assert be.scale(be.Phase("1 server", ["u"], 4, review_s=10.0), two) == (None, "theirs is 0")


# --- bench_dedup, bench_overhead -----------------------------------------------------------------


def test_dedup_figure_names_its_size() -> None:
    assert bdd.figure_name(5000, 5000) == "dedup_5k_seconds"
    assert bdd.figure_name(50_000, 50_000) == "dedup_50k_seconds"
    assert bdd.figure_name(5000, 2500) == "dedup_5krefs_2500items_seconds"
    assert bdd.figure_name(**{k: bdd.QUICK[k] for k in ("refs", "items")}) == "dedup_5k_seconds"


def gen_row(p_tokens: int, p_wall: float, worker: float, r_tokens: int, r_wall: float) -> dict[str, Any]:
    return {"pipeline": {"tokens": p_tokens, "wall": p_wall, "worker_seconds": worker},
            "raw": {"tokens": r_tokens, "wall": r_wall}}


def test_overhead_ratios_are_tokens_per_second() -> None:
    """The pipeline made twice the text in the same wall time: twice the speed; inside the
    worker (half the time) four times. Dividing seconds said 1.0 and 2.0."""
    got = bo.speeds([gen_row(20, 2.0, 1.0, 10, 2.0)])
    assert got["ratio"] == pytest.approx(2.0)
    assert got["worker_ratio"] == pytest.approx(4.0)
    none = bo.speeds([gen_row(20, 2.0, 1.0, 0, 2.0)])
    assert none["ratio"] is None and none["why"] == "theirs is 0"
