"""Canary pairs inside runs (scripted backend): each piece of evidence's discrimination in
run.json; in review mode, a reviewer that rejects the input's bad pairs is not punished."""

from __future__ import annotations

from pathlib import Path

import orjson
from conftest import EXAMPLE_SEEDS
from fakes import Call, FakeBackend, fenced, scores
from test_review_only import write_data
from test_scheduler import request

from gra_local.core.engine.review_only import ReviewSource
from gra_local.core.engine.scheduler import Run
from gra_local.core.seeds.scan import iter_seeds

SEED_PAIRS = {(s.instruction.strip(), (s.response or "").strip()) for s in iter_seeds(EXAMPLE_SEEDS)}


def sharp_a_blunt_c(call: Call) -> dict | None:
    """a scores by the truth (a seed pair 9, anything else 2); c gives 10 to everything."""
    if call.role != "review_b":
        return None
    if call.model == "c":
        return scores(10)
    instruction, response = fenced(call)[:2]
    return scores(9 if (instruction.strip(), response.strip()) in SEED_PAIRS else 2)


def test_each_piece_has_its_discrimination_in_run_json(tmp_path: Path) -> None:
    req = request(tmp_path / "out", ["a", "b", "c"], canaries=8, samples=3, batch=3)
    req.scorer = "a"
    backend = FakeBackend(script=sharp_a_blunt_c)
    result = Run(req, backend, stop=backend.stop).execute()
    evidence = result.run_json.calibration.evidence
    sharp, blunt = evidence["reviewer a: scores"], evidence["reviewer c: scores"]
    assert sharp.pairs >= 4 and sharp.accuracy == 1.0 and sharp.p_better > 0.9
    assert blunt.accuracy == 0.5 and blunt.p_better == 0.5  # ties: at chance
    assert set(sharp.by_kind) <= {"swapped", "cross_domain", "truncated", "numbers_changed",
                                  "injection"}
    assert {"relevance", "likelihood pmi"} <= set(evidence) or result.run_json.relevance is not None
    rows = [orjson.loads(x) for x in (tmp_path / "out" / "canaries.jsonl").read_bytes().splitlines()]
    paired = {r["canary"]: r for r in rows}
    for row in rows:  # a pair is judged by one panel
        if row["pair"] in paired:
            mine = sorted(j["reviewer"] for j in row["judgements"])
            assert mine == sorted(j["reviewer"] for j in paired[row["pair"]]["judgements"])


def test_review_mode_does_not_punish_rejecting_a_bad_input_pair(tmp_path: Path) -> None:
    seeds = [s for s in iter_seeds(EXAMPLE_SEEDS)]
    good = [{"instruction": s.instruction, "output": s.response, "domain": s.domain} for s in seeds[:8]]
    bad = [{"instruction": s.instruction, "output": seeds[(i + 9) % len(seeds)].response,
            "domain": s.domain} for i, s in enumerate(seeds[8:16])]  # swapped: wrong answers
    data = write_data(tmp_path / "data.jsonl", good + bad)
    req = request(tmp_path / "out", ["a", "b", "c"], canaries=8, batch=8)
    req.seeds = data
    backend = FakeBackend(script=sharp_a_blunt_c)
    result = Run(req, backend, stop=backend.stop, source=ReviewSource()).execute()
    cal = result.run_json.calibration
    sharp = cal.evidence["reviewer a: scores"]
    assert sharp.accuracy is not None and sharp.accuracy > 0.5  # never below: ties at worst
    assert sharp.accuracy > cal.evidence["reviewer c: scores"].accuracy
    assert all(k.accuracy is not None and k.accuracy >= 0.5 for k in sharp.by_kind.values())
    # Judged against "the input is good", a is wrong on every bad input pair it rejected.
    a = cal.reviewers["a"]
    assert a.good_correct < a.good_canaries
