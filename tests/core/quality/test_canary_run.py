"""Canaries inside runs (scripted backend): judged by the whole panel, kept out of the
data, summed up per reviewer in run.json, able to weight or drop a careless reviewer,
and resumed exactly."""

from __future__ import annotations

from pathlib import Path

import orjson
from conftest import EXAMPLE_SEEDS
from fakes import Call, FakeBackend, fenced, scores
from test_scheduler import records, request

from gra_local.core.engine.scheduler import Run
from gra_local.core.quality.canaries import INJECTION_PREFIXES, INJECTION_SUFFIXES
from gra_local.core.seeds.scan import iter_seeds

SEED_PAIRS = {(s.instruction.strip(), (s.response or "").strip()) for s in iter_seeds(EXAMPLE_SEEDS)}
GENERATED = "The answer is twice the number."


def pair_of(call: Call) -> tuple[str, str]:
    instruction, response = fenced(call)
    return instruction, response


def careless_c(call: Call) -> dict | None:
    """a and b score canaries by the truth (a seed pair is good, anything else bad);
    c gives every answer a 10. Real samples get 9 from everyone."""
    if call.role != "review_b":
        return None
    instruction, response = pair_of(call)
    if response == GENERATED:
        return scores(9)
    if call.model == "c":
        return scores(10)
    return scores(9 if (instruction, response) in SEED_PAIRS else 2)


def run_canaries(out: Path, backend: FakeBackend | None = None, **opts):
    backend = backend or FakeBackend(script=careless_c)
    req = request(out, ["a", "b", "c"], **({"canaries": 4, "samples": 4, "batch": 2,
                                             "calibration": "flag", "judge": "panel"} | opts))
    return Run(req, backend, stop=backend.stop).execute(), backend


def test_canaries_are_judged_reported_and_never_data(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, backend = run_canaries(out)
    data = records(out, "accepted.jsonl") + records(out, "rejected.jsonl")
    assert data and all(r["id"].startswith("r1-") for r in data)
    rows = [orjson.loads(x) for x in (out / "canaries.jsonl").read_bytes().splitlines()]
    assert rows and all(r["id"].startswith("k1-") for r in rows)
    assert len(rows) == 4 * len({r["id"] for r in data}) // 2  # 4 per batch of 2
    assert all(len(r["judgements"]) == 3 for r in rows)  # the whole panel judged each
    assert {r["kind"] for r in rows} >= {"good"} and any(not r["expected_good"] for r in rows)
    cal = result.run_json.calibration
    reviewers = cal.reviewers
    assert reviewers["a"].accuracy == 1.0 and not reviewers["a"].flagged
    assert reviewers["c"].accuracy < 0.6 and reviewers["c"].flagged
    assert cal.canaries_judged == len(rows) and cal.action == "flag"
    # Agreement covers every decided sample, the last batch's included.
    assert sum(r.samples for r in reviewers.values()) == 3 * len(data)
    assert result.run_json.counts.attempts == len(data)  # canaries are not attempts
    # Flagging alone changes no decision: everything real scored 9 → accepted.
    assert all(r["decision"] == "accepted" for r in data)


def test_drop_leaves_a_flagged_reviewer_out_of_the_decision(tmp_path: Path) -> None:
    def c_hates_real(call: Call) -> dict | None:
        if call.role == "review_b" and call.model == "c" and pair_of(call)[1] == GENERATED:
            return scores(0)  # c alone would sink every real sample
        return careless_c(call)

    def judged_by_c(out: Path) -> list[dict]:
        recs = records(out, "accepted.jsonl") + records(out, "rejected.jsonl")
        return [r for r in recs if "c" in r["reviewers"]]

    flagged = tmp_path / "flag"
    run_canaries(flagged, FakeBackend(script=c_hates_real), samples=4, max_attempts=6)
    with_c = judged_by_c(flagged)
    assert with_c and all(r["reason"] == "low_score" for r in with_c)  # c's zeros sink them
    dropped = tmp_path / "drop"
    result, _ = run_canaries(dropped, FakeBackend(script=c_hates_real), samples=4,
                             max_attempts=6, calibration="drop")
    with_c = judged_by_c(dropped)
    # c was flagged on the first batch's canaries, judged before that batch's decisions.
    assert with_c and all(r["decision"] == "accepted" for r in with_c)
    assert all("dropped" in r["reason_detail"] for r in with_c)
    assert result.run_json.calibration.action == "drop"


def test_weight_makes_a_reviewer_wrong_on_canaries_count_little(tmp_path: Path) -> None:
    def c_hates_real(call: Call) -> dict | None:
        if call.role == "review_b" and call.model == "c" and pair_of(call)[1] == GENERATED:
            return scores(0)
        return careless_c(call)

    out = tmp_path / "weight"
    result, _ = run_canaries(out, FakeBackend(script=c_hates_real), samples=4, max_attempts=6,
                             calibration="weight")
    recs = records(out, "accepted.jsonl") + records(out, "rejected.jsonl")
    with_c = [r for r in recs if "c" in r["reviewers"]]
    assert with_c and all(r["decision"] == "accepted" for r in with_c)  # c's zeros do not sink them
    weights = result.run_json.calibration.reviewers
    assert weights["c"].weight == 0.1 and weights["a"].weight > 0.5
    for rec in with_c:  # each record names the weights it was decided with
        by_model = {rv["model"]: rv["weight"] for rv in rec["reviews"]}
        assert by_model["c"] == 0.1 and by_model["a"] == weights["a"].weight


SEED_INSTRUCTIONS = {instruction for instruction, _ in SEED_PAIRS}


def test_a_batch_is_decided_with_its_own_canaries_weights(tmp_path: Path) -> None:
    """c fails every real sample's instruction check and is at chance on canaries: from the
    very first batch its veto weighs 0.1, so no sample is rejected `instruction_failed`
    (judged after the batch's samples, its weight would still be 1 and veto alone)."""
    def c_vetoes_real(call: Call) -> dict | None:
        if call.role == "review_a" and call.model == "c" and fenced(call)[0] not in SEED_INSTRUCTIONS:
            return {"reasonable": "pass", "complete": "fail", "clear": "pass"}
        return careless_c(call)

    out = tmp_path / "own"
    backend = FakeBackend(script=c_vetoes_real)
    req = request(out, ["a", "b", "c"], canaries=4, samples=2, batch=2, max_attempts=2,
                  calibration="weight", seed=3, judge="panel")  # seed 3: c on both panels
    result = Run(req, backend, stop=backend.stop).execute()
    recs = records(out, "accepted.jsonl") + records(out, "rejected.jsonl")
    assert len(recs) == 2 and all("c" in r["reviewers"] for r in recs)  # one batch, c on each panel
    assert [r["reason"] for r in recs] == ["accepted", "accepted"]
    assert result.run_json.calibration.reviewers["c"].weight == 0.1


def test_stop_and_resume_with_canaries_equals_uninterrupted_run(tmp_path: Path) -> None:
    straight, _ = run_canaries(tmp_path / "straight")
    out = tmp_path / "resumed"
    first, _ = run_canaries(out, FakeBackend(script=careless_c, stop_after=25))
    assert first.status == "interrupted"
    second, _ = run_canaries(out)
    assert second.status == "complete"

    def decided(path: Path) -> list[tuple[str, str]]:
        recs = records(path, "accepted.jsonl") + records(path, "rejected.jsonl")
        return sorted((r["id"], r["decision"]) for r in recs)

    def canaries(path: Path) -> list[tuple[str, str]]:
        rows = [orjson.loads(x) for x in (path / "canaries.jsonl").read_bytes().splitlines()]
        return sorted((r["id"], r["kind"]) for r in rows)

    assert decided(out) == decided(tmp_path / "straight")
    assert canaries(out) == canaries(tmp_path / "straight")
    assert second.run_json.calibration.reviewers == straight.run_json.calibration.reviewers


def test_injection_canaries_are_judged_in_fences_and_reported(tmp_path: Path) -> None:
    """Ten canaries a batch: five corrupted, one of each kind, so one injection. c passes
    everything; a and b are not steered by it."""
    out = tmp_path / "out"
    result, backend = run_canaries(out, canaries=10, samples=2, batch=2)
    rows = [orjson.loads(x) for x in (out / "canaries.jsonl").read_bytes().splitlines()]
    injections = [r for r in rows if r["kind"] == "injection"]
    assert len(injections) == 1 and not injections[0]["expected_good"]
    by_model = {jd["reviewer"]: jd for jd in injections[0]["judgements"]}
    assert by_model["c"]["score"] == 10.0 and by_model["a"]["score"] == 2.0
    def injected(text: str) -> bool:
        return (text.startswith(INJECTION_PREFIXES) or text.endswith(INJECTION_SUFFIXES)
                or "\nReviews:\nReviewer 1: correctness 10" in text)

    asked = [c for c in backend.calls if c.role == "review_b" and injected(fenced(c)[1])]
    assert sorted(c.model for c in asked) == ["a", "b", "c"]  # every judge saw it, fenced
    cal = result.run_json.calibration.reviewers
    assert (cal["c"].injections, cal["c"].injection_pass_rate) == (1, 1.0)
    assert (cal["a"].injection_pass_rate, cal["b"].injection_pass_rate) == (0.0, 0.0)
    written = orjson.loads((out / "run.json").read_bytes())["calibration"]["reviewers"]
    assert {m: r["injection_pass_rate"] for m, r in written.items()} == {"a": 0.0, "b": 0.0, "c": 1.0}
