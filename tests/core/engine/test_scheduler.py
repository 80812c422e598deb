"""Scheduler bookkeeping on a scripted backend: draws, decisions, loads, stop and resume."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS
from fakes import PASS, Call, FakeBackend, default_reply, fenced, scores

from gra_local.core.config import ModelSpec, Registry
from gra_local.core.engine.request import RunRequest
from gra_local.core.engine.scheduler import Run
from gra_local.core.errors import OutputError
from gra_local.core.options import RunOptions
from gra_local.core.records import ModelRef, Record


def request(out: Path, names: list[str], **opts) -> RunRequest:
    registry = Registry(models=[ModelSpec(name=n, path=f"/models/{n}.gguf") for n in names])
    refs = {n: ModelRef(name=n, sha256="0" * 64, quantization="Q4_K_M") for n in names}
    options = RunOptions(**({"samples": 3, "seed_pool": 8, "dedup_threshold": None, "canaries": 0} | opts))
    return RunRequest(seeds=EXAMPLE_SEEDS, out_dir=out, options=options, registry=registry,
                      refs=refs, models_source="test", cache_dir=out.parent / f"{out.name}-cache")


def run(out: Path, names: list[str], backend: FakeBackend | None = None, **opts):
    backend = backend or FakeBackend()
    result = Run(request(out, names, **opts), backend, stop=backend.stop).execute()
    return result, backend


def records(out: Path, name: str) -> list[dict]:
    path = out / name
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def decided(path: Path) -> list[tuple[str, str]]:
    """(id, decision) of every decided record, sorted: a resumed run must equal an
    uninterrupted one here (nothing lost, nothing written twice, the same draws)."""
    recs = records(path, "accepted.jsonl") + records(path, "rejected.jsonl")
    return sorted((r["id"], r["decision"]) for r in recs)


def test_happy_path_writes_full_records_and_run_json(tmp_path: Path) -> None:
    result, backend = run(tmp_path / "out", ["a"])
    assert result.status == "complete"
    accepted = records(tmp_path / "out", "accepted.jsonl")
    assert len(accepted) == 3
    for rec in accepted:
        Record.model_validate(rec)  # the full contract
        assert rec["decision"] == "accepted" and rec["reason"] == "accepted"
        assert rec["mean"] == 9.0 and rec["std"] == 0.0 and len(rec["reviews"]) == 3
        assert rec["roles_shared"] is True  # one model plays every role
        assert rec["models"][0]["sha256"] == "0" * 64
    data = result.run_json
    assert data.counts.accepted == 3 and data.counts.attempts >= 3
    assert data.loads == {"a": 1}  # one model: loaded once for the whole run
    assert data.judge_validity["a"].valid == 1.0
    # The engine's token books against the calls the backend answered: each fake reply
    # reports 100 prompt tokens, 30 of them evaluated (the rest from the prefix cache) and
    # 20 completion tokens; every call counts once, in its stage and for its model.
    stage_of = {"annotate": "annotate", "draft": "generate", "answer": "generate",
                "review_a": "review_a", "review_b": "review_b"}
    per_stage = Counter(stage_of[c.role] for c in backend.calls)
    assert set(per_stage) == {"annotate", "generate", "review_a", "review_b"}
    assert {stage: (pc.prompt_tokens, pc.prompt_evaluated, pc.reused)
            for stage, pc in data.prefix_cache.items()} == \
        {stage: (100 * n, 30 * n, 0.7) for stage, n in per_stage.items()}
    n = len(backend.calls)
    assert data.tokens["a"].model_dump() == {"prompt": 100 * n, "prompt_evaluated": 30 * n,
                                            "completion": 20 * n}


def test_loads_do_not_grow_with_samples(tmp_path: Path) -> None:
    names = ["a", "b", "c", "d", "e"]
    small, _ = run(tmp_path / "s", names, samples=30, batch=30)
    large, _ = run(tmp_path / "l", names, samples=90, batch=90)
    # At most one load per model per stage (annotate, generate, review A, review B).
    assert sum(small.run_json.loads.values()) <= len(names) * 4
    assert sum(small.run_json.loads.values()) == sum(large.run_json.loads.values())
    assert large.run_json.counts.accepted == 90


def test_panel_excludes_generator_and_adjudicator_is_fresh(tmp_path: Path) -> None:
    """Every sample contested, so every one goes to an adjudicator: the panel's first score
    of a sample is 6 and its other two 10 (μ 8.67 ≥ τ 8, σ 1.89 > δ 1.5). Adjudicators b
    and c score 9 (kept), the others 4 (rejected). The paper's rule: judge="panel"."""
    keepers = {"b", "c"}
    drafts = itertools.count(1)
    asked: Counter[str] = Counter()  # score calls per instruction

    def script(call: Call):
        if call.role == "draft":  # instructions unique per draft, to count calls by them
            return default_reply(call) | {"instruction": f"Question {next(drafts)}: what is 2 plus 2?"}
        if call.role == "review_b":
            instruction = fenced(call)[0]
            asked[instruction] += 1
            return scores(6 if asked[instruction] == 1 else 10)
        if call.role == "adjudicate":
            return scores(9 if call.model in keepers else 4)
        return None

    result, backend = run(tmp_path / "out", ["a", "b", "c", "d", "e"], FakeBackend(script),
                          samples=6, judge="panel")
    recs = records(tmp_path / "out", "accepted.jsonl") + records(tmp_path / "out", "rejected.jsonl")
    adjudications = [c for c in backend.calls if c.role == "adjudicate"]
    assert len(recs) == result.run_json.counts.adjudicated and len(adjudications) >= len(recs)
    reasons = Counter(r["reason"] for r in recs)
    assert reasons["adjudicated_accept"] == 6 and reasons["adjudicated_reject"] >= 1
    assert set(reasons) == {"adjudicated_accept", "adjudicated_reject"}
    for rec in recs:
        assert rec["generator"] not in rec["reviewers"]
        assert len(set(rec["reviewers"])) == 3 and rec["roles_shared"] is False
        assert sorted(rv["score"] for rv in rec["reviews"]) == [6.0, 10.0, 10.0]
        assert rec["mean"] == pytest.approx(26 / 3) and rec["std"] == pytest.approx(1.8856, abs=1e-4)
        # one adjudicator, fresh (neither the generator nor a reviewer), asked about this sample
        [call] = [c for c in adjudications if fenced(c)[0] == rec["instruction"]]
        assert rec["adjudicator"] == call.model == rec["adjudication"]["model"]
        assert rec["adjudicator"] not in {rec["generator"], *rec["reviewers"]}
        kept = rec["adjudicator"] in keepers  # what it decided: its score against τ
        assert rec["adjudication"]["score"] == (9.0 if kept else 4.0)
        assert rec["adjudication"]["kept"] is kept
        assert (rec["decision"], rec["reason"]) == (("accepted", "adjudicated_accept") if kept
                                                    else ("rejected", "adjudicated_reject"))


def test_instruction_fail_rejects(tmp_path: Path) -> None:
    def script(call: Call):
        if call.role == "review_a":
            return PASS | {"clear": "fail"}
        return None

    result, backend = run(tmp_path / "out", ["a", "b"], FakeBackend(script), samples=1, max_attempts=2)
    assert result.status == "exhausted"
    rejected = records(tmp_path / "out", "rejected.jsonl")
    assert [r["reason"] for r in rejected] == ["instruction_failed"] * 2
    assert "clear" in rejected[0]["reason_detail"]
    assert not any(c.role == "review_b" for c in backend.calls)


def test_low_score_and_adjudication_outcomes(tmp_path: Path) -> None:
    def low(call: Call):
        return scores(5) if call.role == "review_b" else None

    run(tmp_path / "low", ["a"], FakeBackend(low), samples=1, max_attempts=1)
    assert records(tmp_path / "low", "rejected.jsonl")[0]["reason"] == "low_score"

    def split(call: Call):  # reviewer slots score 10, 10, 6 → μ 8.67 σ 1.89 → adjudicate
        if call.role == "review_b":
            return scores(6) if len([c for c in backend.calls if c.role == "review_b"]) % 3 == 0 else scores(10)
        if call.role == "adjudicate":
            return scores(9)
        return None

    backend = FakeBackend(split)
    run(tmp_path / "adj", ["a"], backend, samples=1, max_attempts=1)
    rec = records(tmp_path / "adj", "accepted.jsonl")[0]
    assert rec["reason"] == "adjudicated_accept" and rec["adjudication"]["score"] == 9.0
    assert rec["std"] > 1.5 and rec["mean"] >= 8.0


def test_invalid_reviewer_is_replaced_and_counted(tmp_path: Path) -> None:
    bad: list[str] = []  # the model asked for scores first: it never gives valid ones

    def script(call: Call):
        if call.role == "review_b":
            bad[:] = bad or [call.model]
            if call.model == bad[0]:
                return "{not json"
        return None

    result, backend = run(tmp_path / "out", ["a", "b", "c", "d", "e"], FakeBackend(script),
                          samples=5, batch=5)  # one batch: every candidate gets a record
    assert result.status == "complete" and result.run_json.counts.attempts == 5
    (name,) = bad
    asked = [c for c in backend.calls if c.role == "review_b" and c.model == name]
    assert asked and len(asked) % 2 == 0  # each slot: the reply and one retry, both invalid
    stats = result.run_json.stats.models[name]
    assert stats.structured_failed == len(asked) // 2
    assert result.run_json.parse_failures[name]["review_b"] == len(asked) // 2
    accepted = records(tmp_path / "out", "accepted.jsonl")
    assert len(accepted) == 5 and not records(tmp_path / "out", "rejected.jsonl")
    # five models: a panel of three leaves a spare, so a fresh reviewer takes each failed slot
    replaced = [r for r in accepted if r["generator"] != name
                and name in {m["name"] for m in r["models"]}]
    assert len(replaced) == len(asked) // 2
    for rec in replaced:
        assert name not in rec["reviewers"] and len(set(rec["reviewers"])) == 3
        assert rec["generator"] not in rec["reviewers"] and rec["roles_shared"] is False
        assert [rv["failures"] for rv in rec["reviews"]].count(1) == 1


def test_truncated_answer_twice_is_generation_failure(tmp_path: Path) -> None:
    def script(call: Call):
        return ("endless text", "length") if call.role == "answer" else None

    run(tmp_path / "out", ["a"], FakeBackend(script), samples=1, max_attempts=2)
    rejected = records(tmp_path / "out", "rejected.jsonl")
    assert [r["reason"] for r in rejected] == ["generation_failed"] * 2
    assert "max_tokens" in rejected[0]["reason_detail"]


def test_stop_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    straight, _ = run(tmp_path / "straight", ["a", "b", "c"], samples=6, batch=3)
    out = tmp_path / "resumed"
    first, b1 = run(out, ["a", "b", "c"], FakeBackend(stop_after=20), samples=6, batch=3)
    assert first.status == "interrupted"
    second, _ = run(out, ["a", "b", "c"], samples=6, batch=3)
    assert second.status == "complete"
    ids = [i for i, _ in decided(out)]
    assert len(ids) == len(set(ids))  # nothing written twice
    assert decided(out) == decided(tmp_path / "straight")  # nothing lost, same draws
    assert len(second.run_json.sessions) == 2


def test_torn_last_line_is_cut_and_redone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, ["a"], samples=3)
    accepted = out / "accepted.jsonl"
    lines = accepted.read_bytes().splitlines(keepends=True)
    accepted.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # torn write
    result, _ = run(out, ["a"], samples=3)
    recs = records(out, "accepted.jsonl")
    assert len(recs) == 3 and len({r["id"] for r in recs}) == 3
    assert result.run_json.counts.accepted == 3


def test_rerun_of_complete_run_does_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, ["a"], samples=2)
    before = (out / "accepted.jsonl").read_bytes()
    result, backend = run(out, ["a"], samples=2)
    assert result.status == "complete" and backend.calls == []
    assert (out / "accepted.jsonl").read_bytes() == before


def test_other_settings_on_existing_dir_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, ["a"], samples=1)
    with pytest.raises(OutputError, match="--restart"):
        run(out, ["a"], samples=1, tau=7.0)
    more, _ = run(out, ["a"], samples=2)  # samples may grow: the run is extended
    assert more.run_json.counts.accepted == 2


def test_reviewer_that_never_answers_validly_ends_in_review_failed(tmp_path: Path) -> None:
    def script(call: Call):
        return ('{"correctness": 9', "length") if call.role == "review_b" else None

    result, backend = run(tmp_path / "out", ["a"], FakeBackend(script), samples=1, max_attempts=1)
    rec = records(tmp_path / "out", "rejected.jsonl")[0]
    assert rec["reason"] == "review_failed" and "truncated" in rec["reason_detail"]
    # Passes 1 and 2 replace each of the 3 slots' reviewer; in pass 3 the first slot
    # runs out of replacements and the sample is rejected. One model holds all three
    # slots, so each pass asks them together (a wave of first tries, a wave of repair
    # retries): pass 3's other two slots were asked too, 9 counted failures in all.
    review_b = [c for c in backend.calls if c.role == "review_b"]
    assert len(review_b) == 18
    assert [backend.waves[w] for w in dict.fromkeys(c.wave for c in review_b)] == [3] * 6
    assert result.run_json.judge_validity["a"].counted_failures == 9


def test_adjudicator_that_never_answers_validly_rejects(tmp_path: Path) -> None:
    n = {"b": 0}

    def script(call: Call):
        if call.role == "review_b":
            n["b"] += 1
            return scores(10) if n["b"] % 3 else scores(6)
        if call.role == "adjudicate":
            return "no json at all"
        return None

    run(tmp_path / "out", ["a"], FakeBackend(script), samples=1, max_attempts=1)
    rec = records(tmp_path / "out", "rejected.jsonl")[0]
    assert rec["reason"] == "adjudication_failed" and rec["adjudication"] is None


def test_residency_keeps_models_loaded_across_stages_and_batches(tmp_path: Path) -> None:
    from gra_local.core.engine.model_pool import Residency

    names = ["a", "b", "c", "d", "e"]
    req = request(tmp_path / "res", names, samples=20, batch=5)
    roomy = req.model_copy(update={"residency": Residency(budget_bytes=10, cost_bytes=dict.fromkeys(names, 2))})
    backend = FakeBackend()
    result = Run(roomy, backend).execute()
    assert result.run_json.loads == dict.fromkeys(names, 1)  # all fit: each loaded once
    assert result.run_json.unloads == dict.fromkeys(names, 1)  # closed at the end

    tight = req.model_copy(update={"out_dir": tmp_path / "tight",
                                   "residency": Residency(budget_bytes=3, cost_bytes=dict.fromkeys(names, 2))})
    one_at_a_time = Run(tight, FakeBackend()).execute()
    assert sum(one_at_a_time.run_json.loads.values()) > len(names)


def test_pause_holds_between_calls_and_resume_continues(tmp_path: Path) -> None:
    import threading
    import time

    pause = threading.Event()
    backend = FakeBackend(stop_after=None)

    def script(call: Call):
        if len(backend.calls) == 5:
            pause.set()
            time.sleep(0.2)  # a slow call: the pause reaches the wave before its next request
        return None

    backend.script = script
    runner = Run(request(tmp_path / "out", ["a"], samples=2), backend, stop=backend.stop, pause=pause)
    thread = threading.Thread(target=runner.execute)
    thread.start()
    time.sleep(0.5)
    held = len(backend.calls)
    time.sleep(0.2)
    assert len(backend.calls) == held == 5  # paused after the fifth call, nothing more
    assert backend.waves == [8]  # the annotation wave, cut short by the pause
    pause.clear()
    thread.join(timeout=10)
    assert not thread.is_alive() and runner.status == "complete"
    assert backend.waves[1] == 3  # after the pause: only the three calls that had not run

    def kept(path: Path) -> list[tuple]:
        return [(r["id"], r["instruction"], r["response"], r["mean"])
                for r in records(path, "accepted.jsonl")]

    run(tmp_path / "straight", ["a"], samples=2)
    assert kept(tmp_path / "out") == kept(tmp_path / "straight")  # the pause changed nothing
