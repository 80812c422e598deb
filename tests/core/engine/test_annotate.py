"""Seed annotation on the scripted backend: a seed too long for its annotator's context is
reported by file and line and skipped; no seed left is one clear error."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fakes import TOO_LONG, TOO_LONG_PROMPT, Call, FakeBackend, Reply
from test_scheduler import records, request

from gra_local.core.engine.calls import reply_room
from gra_local.core.engine.scheduler import Run
from gra_local.core.errors import SeedError
from gra_local.core.events import Event, Notice
from gra_local.core.records import Annotation

LONG = "Summarise the whole of this book"


def write_seeds(path: Path, long_lines: set[int], n: int = 4) -> Path:
    rows = [{"instruction": f"{LONG} number {i}." if i in long_lines else f"Add {i} and {i}.",
             "output": f"{2 * i}"} for i in range(1, n + 1)]
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


def script(call: Call) -> Reply | None:
    return TOO_LONG if call.role == "annotate" and LONG in call.request.messages[-1]["content"] else None


def start(tmp_path: Path, seeds: Path) -> tuple[Run, list[Event]]:
    req = request(tmp_path / "out", ["a"], samples=2)
    req.seeds = seeds
    events: list[Event] = []
    backend = FakeBackend(script)
    return Run(req, backend, emit=events.append, stop=backend.stop), events


def test_a_too_long_seed_is_reported_by_line_and_skipped(tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "seeds.jsonl", {3})
    run, events = start(tmp_path, seeds)
    result = run.execute()
    assert result.status == "complete"
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert f"{seeds} line 3: too long for a's context ({TOO_LONG_PROMPT} prompt + " \
           f"{reply_room(Annotation)} reply tokens of 2048); skipped" in notices
    assert not any("no valid annotation" in n for n in notices)  # not counted as invalid
    pool = records(tmp_path / "out", "pool.jsonl")
    assert [p["source"] for p in pool] == ["seed line 1", "seed line 2", "seed line 4"]
    assert result.run_json.seeds.pool == 3
    assert len(records(tmp_path / "out", "accepted.jsonl")) == 2


def test_every_seed_too_long_is_one_clear_error(tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "seeds.jsonl", {1, 2, 3}, n=3)
    run, _ = start(tmp_path, seeds)
    with pytest.raises(SeedError) as err:
        run.execute()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{seeds}: every seed is too long for its annotator's context "
                              f"(first: line 1, {TOO_LONG_PROMPT} prompt + {reply_room(Annotation)} reply "
                              "tokens of 2048)")
