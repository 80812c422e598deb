"""run.json is built as a RunReport and must be written byte for byte as it was when it was
built as a dict: the dict builder of before is kept here as the reference, and both build
from the same scripted runs (generation with canaries, dedup, two rounds, a residency
budget and a resumed second session; review-only; the first write, before the seeds)."""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import EXAMPLE_SEEDS
from fakes import Call, FakeBackend, HashEmbedder
from test_review_only import PAIRS, write_data
from test_scheduler import request

from gra_local import __version__
from gra_local.core.engine import run_json as rj
from gra_local.core.engine.model_pool import Residency
from gra_local.core.engine.review_only import ReviewSource
from gra_local.core.engine.scheduler import Run
from gra_local.core.engine.state import RunState
from gra_local.core.rundir.report import SCHEMA_VERSION, PeakRss, SeedsInfo, read_report

NOW = "2026-01-02T03:04:05Z"
RSS = {"main": 123.4, "workers": 56.7}


def old_build_run_json(run: RunState, elapsed: float) -> dict[str, Any]:
    """engine/run_json.py's builder before RunReport, verbatim but where its inputs are
    typed now: `previous`, `identity` and `seeds_info` are read through their dumps."""
    stats = run.stats
    previous = run.previous.model_dump(mode="json") if run.previous is not None else {}
    sessions = list(previous.get("sessions", []))
    sessions.append({"started": run.started, "ended": rj.now(), "status": run.status,
                     "seconds": round(elapsed, 2)})
    validity = {}
    for name, ms in stats.models.items():
        if ms.structured_total:
            validity[name] = {
                "structured_calls": ms.structured_total,
                "valid": round(ms.validity() or 0.0, 4),
                "valid_first_try": round(ms.first_try_validity() or 0.0, 4),
                "counted_failures": ms.structured_failed,
                "invalid_replies": ms.invalid_replies,
            }
    prefix = {
        stage: {"prompt_tokens": st.prompt_tokens, "prompt_evaluated": st.prompt_evaluated,
                "reused": round(1 - st.prompt_evaluated / st.prompt_tokens, 4) if st.prompt_tokens else None}
        for stage, st in stats.stages.items()
    }
    book = run.book
    calibration = {"canaries_per_batch": run.opts.canaries, "canaries_judged": len(book.decided),
                   "action": run.opts.calibration if run.opts.canaries else None,
                   **book.report.model_dump(mode="json"),
                   # added with canary pairs (issue 20): each piece of evidence's discrimination
                   "evidence": {k: v.model_dump(mode="json") for k, v in book.evidence().items()},
                   # added with the calibrated decision (issue 20): what decides, calls saved
                   "judge": run.opts.judge if run.opts.canaries else None,
                   "decided_by": book.decided_by(), "panel_not_asked": stats.panel_not_asked}
    return {
        "schema_version": 2,
        "status": run.status,
        "out_dir": str(run.out),
        "identity": run.identity.model_dump(mode="json"),
        "config": {
            "seeds": str(run.req.seeds),
            "models_file": run.req.models_source,
            "options": run.opts.model_dump(mode="json"),
            "models": [m.model_dump(mode="json") for m in run.req.registry.models],
        },
        "versions": {"gra_local": __version__, "llama_cpp_python": rj._llama_version(),
                     "python": platform.python_version(), "platform": platform.platform()},
        "models": {name: ref.model_dump() for name, ref in run.req.refs.items()},
        "seeds": run.seeds_info.model_dump(mode="json"),
        "counts": stats.counts.model_dump(),
        "rounds": {k: v.model_dump() for k, v in stats.rounds.items()},
        "dedup": run.dedup.describe(),
        "calibration": calibration,
        # added with the relevance check (issue 14): its threshold and vetoes
        "relevance": None if run.relevance_info is None else {
            **run.relevance_info.model_dump(mode="json"),
            "vetoed": stats.counts.by_reason.get("off_topic", 0),
            "calls_saved": stats.counts.by_reason.get("off_topic", 0) * run.opts.panel * 2},
        # added with likelihood evidence (issue 20): which model read the answers
        "likelihood": {"enabled": False, "model": None, "scored": 0,
                       "note": "off: no GGUF model to score with (a server gives log-probs "
                               "only for tokens it generates)", "unscored": {}},
        "loads": {name: ms.loads for name, ms in stats.models.items()},
        "placement": {name: {"n_gpu_layers": ms.n_gpu_layers, "plan": ms.gpu_plan}
                      for name, ms in stats.models.items()},
        "residency": (None if run.req.residency is None else
                      {"budget_bytes": run.req.residency.budget_bytes,
                       "cost_bytes": run.req.residency.cost_bytes}),
        "unloads": {name: ms.unloads for name, ms in stats.models.items()},
        # added after the typed report landed (issue 12): lost workers, none in these runs
        # (why a model is dropped: the pool's since the review mending of issue 14)
        "worker_failures": {name: {"losses": ms.worker_losses, "dropped": run.pool.drop_reason(name)}
                            for name, ms in stats.models.items() if ms.worker_losses},
        "tokens": {name: {"prompt": ms.prompt_tokens, "prompt_evaluated": ms.prompt_evaluated,
                          "completion": ms.completion_tokens}
                   for name, ms in stats.models.items()},
        "timings": {stage: round(st.seconds, 3) for stage, st in stats.stages.items()},
        "judge_validity": validity,
        "parse_failures": {name: ms.parse_failures for name, ms in stats.models.items()},
        "prefix_cache": prefix,
        "roles_shared": {"candidates": stats.roles_shared,
                         "models_registered": len(run.req.registry.models),
                         "panel": run.opts.panel},
        # added with confidence routing (issue 14): calls saved and added
        "routing": stats.routing.model_dump() if run.opts.routing else None,
        "peak_rss_mb": RSS,
        "eta": {"predicted_seconds": run.req.predicted_seconds,
                "actual_seconds": round(sum(x.get("seconds", 0) for x in sessions), 2)},
        "sessions": sessions,
        "stats": stats.model_dump(),
    }


@pytest.fixture(autouse=True)
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two figures that change from one build to the next."""
    monkeypatch.setattr(rj, "now", lambda: NOW)
    monkeypatch.setattr(rj, "peak_rss_mb", lambda: PeakRss(**RSS))


def as_file(doc: object) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def assert_same_file(run: RunState, elapsed: float = 12.345) -> dict[str, Any]:
    new = rj.build_run_json(run, elapsed).model_dump(mode="json")
    old = old_build_run_json(run, elapsed)
    assert list(new) == list(old)
    assert as_file(new) == as_file(old)
    return new


def flaky_b() -> Callable[[Call], str | None]:
    """Model b breaks two score replies in a row out of every five: invalid replies, repair
    retries that fail too, parse failures."""
    calls = [0]

    def script(call: Call) -> str | None:
        if call.role == "review_b" and call.model == "b":
            calls[0] += 1
            if calls[0] % 5 in (1, 2):
                return "{not json"
        return None

    return script


def test_generation_run_is_written_as_before(tmp_path: Path) -> None:
    out = tmp_path / "out"
    names = ["a", "b", "c", "d"]

    def generation(samples: int) -> Run:
        req = request(out, names, samples=samples, rounds=2, batch=2, canaries=2, judge="panel",
                      dedup_threshold=0.9, relevance=False)
        req.embedder = HashEmbedder()
        req.residency = Residency(budget_bytes=10, cost_bytes=dict.fromkeys(names, 3))
        req.predicted_seconds = 42.5
        backend = FakeBackend(script=flaky_b())
        run = Run(req, backend, stop=backend.stop)
        run.execute()
        return run

    first = generation(samples=1)
    doc = assert_same_file(first.state)
    assert doc["dedup"]["enabled"] is True and doc["calibration"]["reviewers"]
    assert doc["judge_validity"]["b"]["invalid_replies"] and doc["parse_failures"]["b"]
    assert doc["residency"] is not None and set(doc["rounds"]) == {"1", "2"}
    assert list(doc["seeds"]) == ["path", "sha256", "format", "usable", "skipped", "pool"]
    # issue 12: the mode joined the identity (run.json gains one key, nothing else moves)
    assert list(doc["identity"]) == ["seeds_sha256", "options", "models", "mode"]
    assert doc["identity"]["mode"] == "run"

    second = generation(samples=2)  # resumed: the first session is carried over
    assert second.state.previous is not None
    doc = assert_same_file(second.state)
    assert [s["status"] for s in doc["sessions"]] == ["complete", "complete"]
    # What the engine wrote last is the model it hands back, dumped as it is.
    written = (out / "run.json").read_bytes()
    assert written == as_file(second.run_json.model_dump(mode="json"))
    # ... and reading it back loses nothing: a resumed run carries sessions and seeds over.
    read = read_report(out / "run.json")
    assert read is not None and as_file(read.model_dump(mode="json")) == written

    second.state.seeds_info = SeedsInfo()  # the first write of a run, before the seeds are read
    assert assert_same_file(second.state)["seeds"] == {}


def test_review_run_is_written_as_before(tmp_path: Path) -> None:
    req = request(tmp_path / "out", ["a", "b", "c"])
    req.seeds = write_data(tmp_path / "data.jsonl", PAIRS + [{"instruction": "No answer."}])
    backend = FakeBackend()
    run = Run(req, backend, stop=backend.stop, source=ReviewSource())
    run.execute()
    doc = assert_same_file(run.state, elapsed=0.004)
    assert list(doc["seeds"]) == ["path", "sha256", "format", "usable", "skipped",
                                  "without_response", "mode"]
    assert doc["dedup"] == {"enabled": False} and doc["schema_version"] == SCHEMA_VERSION


def test_a_kept_report_does_not_follow_the_run(tmp_path: Path) -> None:
    """The report is a snapshot: counting on after building it changes nothing in it."""
    req = request(tmp_path / "out", ["a"], samples=1)
    run = Run(req, FakeBackend())
    run.execute()
    report = rj.build_run_json(run.state, 1.0)
    before = report.model_dump(mode="json")
    run.state.stats.counts.accepted += 5
    run.state.stats.round(1).attempts += 5
    run.state.stats.model("a").loads += 5
    assert report.model_dump(mode="json") == before
    assert report.counts.accepted == 1 and report.config is not None
    assert report.config.seeds == str(EXAMPLE_SEEDS)
