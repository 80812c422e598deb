"""Which evidence decides, through whole runs on a scripted backend: the scripted panel
scores everything alike (at chance on canary pairs); the scripted scorer's log-probs tell
answers that share their instruction's words from those that do not (tests/fakes.py)."""

from __future__ import annotations

from pathlib import Path

import orjson
from fakes import FakeBackend
from test_scheduler import records, request

from gra_local.core.engine.review_only import ReviewSource
from gra_local.core.engine.scheduler import Run
from gra_local.core.options import MAX_SAMPLES
from gra_local.core.quality.canary_flow import READ_ONLY_FROM, READ_ONLY_PAIRS

NAMES = ["a", "b", "c"]


def go(out: Path, scorer: str | None, backend: FakeBackend | None = None, **opts):
    req = request(out, NAMES, **({"canaries": 4, "samples": 3, "max_attempts": 8} | opts))
    req.scorer = scorer
    backend = backend or FakeBackend()
    return Run(req, backend, stop=backend.stop).execute(), backend


def decided(out: Path) -> list[tuple[str, str, str]]:
    recs = [r for f in ("accepted.jsonl", "rejected.jsonl", "unverified.jsonl") for r in records(out, f)]
    return sorted((r["id"], r["decision"], r["reason"]) for r in recs)


def review_calls(backend: FakeBackend) -> int:
    return sum(c.role in ("review_a", "review_b") for c in backend.calls)


def test_with_nothing_informative_samples_are_kept_unverified_and_the_panel_not_asked(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, backend = go(out, scorer=None)
    data = result.run_json
    assert result.status == "exhausted"
    assert data.counts.unverified == 8 and data.counts.accepted == data.counts.rejected == 0
    held = records(out, "unverified.jsonl")
    assert len(held) == 8 and {r["decision"] for r in held} == {"unverified"}
    assert all("no evidence shown informative" in r["reason_detail"] for r in held)
    assert all(rv["verdict"] is None and rv["scores"] is None for r in held for rv in r["reviews"])
    cal = data.calibration
    assert cal is not None and cal.judge == "evidence" and cal.panel_not_asked == 8 * 3
    assert cal.decided_by.startswith("nothing yet")
    # Canaries alone were reviewed: each by the three distinct models, in two phases.
    assert review_calls(backend) == cal.canaries_judged * 3 * 2


def test_informative_likelihood_decides_when_the_panel_is_not(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, backend = go(out, scorer="a")
    data = result.run_json
    assert result.status == "complete" and data.counts.accepted == 3
    accepted = records(out, "accepted.jsonl")
    assert {r["reason"] for r in accepted} == {"evidence_accept"}
    for rec in accepted:
        assert "correctness not checked: no reviewer shown better than chance" in rec["reason_detail"]
        assert rec["likelihood"]["pmi"] is not None
        assert rec["margin"] >= 0 and f"margin {rec['margin']:.2f} on " in rec["reason_detail"]
    for rec in records(out, "rejected.jsonl"):  # the evidence decided these too
        assert rec["reason"] not in ("evidence_reject", "off_topic") or rec["margin"] < 0
    cal = data.calibration
    assert cal is not None and cal.evidence["likelihood pmi"].standing == "informative"
    # PMI and mean log-prob catch the same canaries here: one of them vetoes, not both
    vetoes = [p for p, d in cal.evidence.items() if d.threshold is not None]
    assert len(vetoes) == 1 and vetoes[0] in ("likelihood pmi", "likelihood mean_logprob")
    assert cal.evidence["reviewer a: scores"].standing == "unsettled"
    assert review_calls(backend) == cal.canaries_judged * 3 * 2  # samples never reviewed
    assert cal.canaries_judged == 8  # the first batch's four pairs: enough to decide


def test_judge_panel_keeps_the_papers_rule(tmp_path: Path) -> None:
    result, _ = go(tmp_path / "out", scorer="a", judge="panel")
    accepted = records(tmp_path / "out", "accepted.jsonl")
    assert result.status == "complete" and {r["reason"] for r in accepted} == {"accepted"}
    assert result.run_json.calibration is not None
    assert result.run_json.calibration.canaries_judged == 4  # --canaries, no first-batch top-up


def test_a_run_stopped_while_samples_are_held_resumes_to_the_same_records(tmp_path: Path) -> None:
    go(tmp_path / "straight", scorer=None)
    out = tmp_path / "resumed"
    first, _ = go(out, scorer=None, backend=FakeBackend(stop_after=80))  # in batch 2: 6 held
    assert first.status == "interrupted"
    second, _ = go(out, scorer=None)
    assert second.status == "exhausted"
    assert decided(out) == decided(tmp_path / "straight")


def test_reviewers_at_chance_are_asked_on_one_canary_draw_a_batch(tmp_path: Path) -> None:
    """After 8 tied pairs the scripted panel is at chance: later batches ask it about one
    canary pair each (enough for later pairs to bring it back), not about every pair."""
    out = tmp_path / "out"
    result, backend = go(out, scorer=None, samples=6, max_attempts=30, batch=6)
    cal = result.run_json.calibration
    assert cal is not None and "no reviewer better than chance on" in cal.decided_by
    rows = records(out, "canaries.jsonl")
    by_batch: dict[int, list[int]] = {}
    for n, row in enumerate(rows):
        by_batch.setdefault(0 if n < 8 else 1 + (n - 8) // 4, []).append(len(row["judgements"]))
    assert by_batch[0] == [3] * 8  # the first batch's four pairs: the whole (distinct) panel
    thinned = [b for b in by_batch.values() if 0 in b]
    assert thinned and all(counts.count(3) == 2 for counts in thinned)  # one pair still asked
    assert review_calls(backend) == sum(map(sum, by_batch.values())) * 2


def test_a_reviews_first_batch_adds_pairs_only_the_cheap_evidence_reads(tmp_path: Path) -> None:
    """In `review` the first batch carries READ_ONLY_PAIRS more pairs, read by the scoring
    model and the relevance check but asked of no reviewer: three of each corruption kind,
    so that a likelihood signal can be shown informative on one kind from the start."""
    rows = [{"instruction": f"Explain step {n} of making bread dough at home.",
             "output": f"Step {n}: knead the dough for {n + 5} minutes until it is smooth and "
                       "elastic, then let it rest under a cloth."} for n in range(12)]
    data = tmp_path / "data.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    req = request(tmp_path / "out", NAMES, canaries=4, samples=MAX_SAMPLES, batch=6)
    req.seeds, req.scorer = data, "a"
    backend = FakeBackend()
    result = Run(req, backend, stop=backend.stop, source=ReviewSource()).execute()
    assert result.status == "complete"
    canaries = records(tmp_path / "out", "canaries.jsonl")
    first = [c for c in canaries if int(c["id"].split("-")[1]) <= 8 + 2 * READ_ONLY_PAIRS]
    read_only = [c for c in first if not c["judgements"]]
    assert len(first) == 38 and len(read_only) == 2 * READ_ONLY_PAIRS
    assert all("likelihood" in c for c in read_only)
    kinds = [c["kind"] for c in read_only if c["kind"] != "good"]
    # kinds take turns: at least three of each the pairs allow (one domain: no cross_domain)
    assert len(set(kinds)) == 4 and all(kinds.count(k) >= 3 for k in set(kinds))
    later = [c for c in canaries if c not in first]
    assert len(later) == 4  # the second batch: --canaries, every one asked
    assert review_calls(backend) == 8 * 3 * 2 + sum(len(c["judgements"]) * 2 for c in later)


def test_a_large_first_batch_in_run_adds_read_only_pairs_a_small_one_does_not(tmp_path: Path) -> None:
    """In `run` the read-only pairs come with a first batch of READ_ONLY_FROM samples or
    more (a 50-sample run: one batch of 100 attempts), never with a small one (the quickstart)."""
    counts = {}
    for batch in (READ_ONLY_FROM, READ_ONLY_FROM - 1):
        out = tmp_path / f"b{batch}"
        go(out, scorer="a", samples=3, max_attempts=batch, batch=batch)
        canaries = records(out, "canaries.jsonl")
        counts[batch] = (len(canaries), sum(not c["judgements"] for c in canaries))
    assert counts == {READ_ONLY_FROM: (8 + 2 * READ_ONLY_PAIRS, 2 * READ_ONLY_PAIRS),
                      READ_ONLY_FROM - 1: (8, 0)}


def test_a_scorer_lost_too_often_leaves_its_samples_for_a_rerun(tmp_path: Path, monkeypatch) -> None:
    """The scoring model's worker keeps dying: each loss reads the pairs again on a fresh
    worker; once it is dropped its samples are left undecided (never decided without the
    evidence, never read again forever), and the run ends interrupted."""
    import fakes
    import pytest

    from gra_local.core.errors import ModelDown, WorkerLost

    def dies(self, requests, cancel=None):
        raise WorkerLost(f"model {self.name!r}: worker process died while scoring")

    monkeypatch.setattr(fakes.FakeSession, "score_many", dies)
    with pytest.raises(ModelDown, match="samples were left undecided: model 'a' was dropped"):
        go(tmp_path / "out", scorer="a")
    assert records(tmp_path / "out", "accepted.jsonl") == []
