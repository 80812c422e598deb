"""run.json as the engine writes it, pinned against stored bytes.

Scripted runs (a generation run with canaries, dedup, two rounds, a flaky reviewer, a
residency budget and a resumed second session; a review-only run) write run.json; each
write pinned here must equal, byte for byte, its file in fixtures/run_json/ once the
fields that change from one run or machine to the next are normalised (`normalise`:
paths, timestamps, durations, versions, peak RSS). Nothing else is masked: a changed
count, a moved or renamed key, a new field or another number format fails.

When run.json is meant to change, regenerate the fixtures on purpose and review the diff:

    GRA_REGEN_FIXTURES=1 .venv/bin/python -m pytest tests/core/engine/test_run_json.py
    git diff tests/core/engine/fixtures/run_json/

(a regenerating run rewrites the files and skips instead of comparing)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import EXAMPLE_SEEDS, REPO
from fakes import Call, FakeBackend, HashEmbedder
from test_review_only import PAIRS, write_data
from test_scheduler import request

from gra_local.core.engine import run_json as rj
from gra_local.core.engine.model_pool import Residency
from gra_local.core.engine.review_only import ReviewSource
from gra_local.core.engine.scheduler import Run
from gra_local.core.rundir.report import read_report

FIXTURES = Path(__file__).parent / "fixtures" / "run_json"
REGEN = os.environ.get("GRA_REGEN_FIXTURES") == "1"


def as_file(doc: object) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def normalise(doc: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """`doc` with what varies between runs and machines replaced by placeholders, keys kept
    in place: paths under `tmp` or the repository, the gra-local/llama-cpp-python/Python/
    platform versions, peak RSS, session times and every measured duration."""

    def paths(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: paths(v) for k, v in x.items()}
        if isinstance(x, list):
            return [paths(v) for v in x]
        if isinstance(x, str):
            for root, name in ((tmp, "<tmp>"), (REPO, "<repo>")):
                if x == str(root) or x.startswith(str(root) + os.sep):
                    return name + x[len(str(root)):].replace(os.sep, "/")
        return x

    out = paths(doc)
    out["versions"] = dict.fromkeys(out["versions"], "<version>")
    out["peak_rss_mb"] = dict.fromkeys(out["peak_rss_mb"], "<MiB>")
    out["eta"]["actual_seconds"] = "<seconds>"
    for session in out["sessions"]:
        session.update(started="<time>", ended="<time>", seconds="<seconds>")
    out["timings"] = dict.fromkeys(out["timings"], "<seconds>")
    for stage in out["stats"]["stages"].values():
        stage["seconds"] = "<seconds>"
    return out


@pytest.fixture
def pin(tmp_path: Path) -> Iterator[Callable[[bytes, str], dict[str, Any]]]:
    """pin(written, name): `written` (run.json's bytes) must be orjson's indented dump of
    its document, and, normalised, equal fixtures/run_json/`name`. Returns the document."""
    rewritten: list[str] = []

    def check(written: bytes, name: str) -> dict[str, Any]:
        doc = orjson.loads(written)
        assert written == as_file(doc)  # the bytes are the document's dump: nothing else to pin
        got = as_file(normalise(doc, tmp_path)) + b"\n"
        fixture = FIXTURES / name
        if REGEN:
            fixture.parent.mkdir(parents=True, exist_ok=True)
            fixture.write_bytes(got)
            rewritten.append(name)
            return doc
        assert fixture.is_file(), f"no {fixture}: make it with GRA_REGEN_FIXTURES=1 (module docstring)"
        expected = fixture.read_bytes()
        if got != expected:
            diff = difflib.unified_diff(expected.decode().splitlines(), got.decode().splitlines(),
                                        f"fixtures/run_json/{name}", "written (normalised)",
                                        lineterm="", n=2)
            pytest.fail("run.json differs from its stored bytes (if meant, regenerate: module "
                        "docstring):\n" + "\n".join(list(diff)[:80]), pytrace=False)
        return doc

    yield check
    if rewritten:
        pytest.skip(f"GRA_REGEN_FIXTURES=1: rewrote {', '.join(rewritten)}")


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """run.json's bytes after each of the engine's writes, in order."""
    out: list[bytes] = []
    write = Run.write_run_json

    def recorded(self: Run) -> None:
        write(self)
        out.append((self.out / "run.json").read_bytes())

    monkeypatch.setattr(Run, "write_run_json", recorded)
    return out


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


def test_generation_run_json_is_pinned(tmp_path: Path, pin, writes: list[bytes]) -> None:
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
    # The first write, before the seeds are read: the run's settings, nothing counted yet.
    doc = pin(writes[0], "generation_first_write.json")
    assert doc["status"] == "running" and doc["seeds"] == {} and doc["counts"]["attempts"] == 0
    doc = pin((out / "run.json").read_bytes(), "generation_session_1.json")
    assert doc["dedup"]["enabled"] is True and doc["calibration"]["reviewers"]
    assert doc["judge_validity"]["b"]["invalid_replies"] and doc["parse_failures"]["b"]
    assert doc["residency"] is not None and set(doc["rounds"]) == {"1", "2"}
    assert (out / "run.json").read_bytes() == as_file(first.run_json.model_dump(mode="json"))

    second = generation(samples=2)  # resumed: the first session is carried over
    assert second.state.previous is not None
    written = (out / "run.json").read_bytes()
    doc = pin(written, "generation_session_2.json")
    assert [s["status"] for s in doc["sessions"]] == ["complete", "complete"]
    # What the engine wrote last is the model it hands back, dumped as it is.
    assert written == as_file(second.run_json.model_dump(mode="json"))
    # ... and reading it back loses nothing: a resumed run carries sessions and seeds over.
    read = read_report(out / "run.json")
    assert read is not None and as_file(read.model_dump(mode="json")) == written


def test_review_run_json_is_pinned(tmp_path: Path, pin) -> None:
    req = request(tmp_path / "out", ["a", "b", "c"])
    req.seeds = write_data(tmp_path / "data.jsonl", PAIRS + [{"instruction": "No answer."}])
    backend = FakeBackend()
    run = Run(req, backend, stop=backend.stop, source=ReviewSource())
    run.execute()
    doc = pin((tmp_path / "out" / "run.json").read_bytes(), "review.json")
    assert doc["seeds"]["mode"] and doc["dedup"] == {"enabled": False}


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
