"""A model's speed measured at its first load on a machine, on a real tiny GGUF: cached per
file, placement and build, read back by later loads; a failed probe leaves the model
loaded with the reason (backends.llama.speed)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gra_local.backends.llama import speed
from gra_local.backends.llama.process import LlamaProcessSession
from gra_local.core import paths
from gra_local.core.backend import ChatRequest
from gra_local.core.errors import BackendError
from gra_local.models.bench import BenchStore

Worker = Callable[..., LlamaProcessSession]


@pytest.fixture(autouse=True)
def probing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(speed.PROBE_ENV, "1")


def test_the_first_load_measures_and_later_loads_read_it_back(tiny_worker: Worker, tiny_gguf: Path,
                                                             tmp_path: Path) -> None:
    first = tiny_worker().info.details
    assert first["speed_source"] == "measured at load"
    assert float(first["prompt_tokens_per_s"]) > 0 and float(first["decode_tokens_per_s"]) > 0
    stored = BenchStore(paths.cache_dir()).get(tiny_gguf, 0)
    assert stored is not None and stored.decode_tokens_per_s == first["decode_tokens_per_s"]
    again = tiny_worker().info.details
    assert again["speed_source"] == "cached" and again["decode_tokens_per_s"] == first["decode_tokens_per_s"]
    copy = tmp_path / "copy.gguf"  # another file (a changed one alike): measured again
    copy.write_bytes(tiny_gguf.read_bytes())
    assert tiny_worker(copy).info.details["speed_source"] == "measured at load"
    os.utime(copy, ns=(1, 1))
    assert tiny_worker(copy).info.details["speed_source"] == "measured at load"


def test_a_failed_probe_leaves_the_model_loaded_with_the_reason(tiny_worker: Worker,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise BackendError("the worker answered nothing")

    monkeypatch.setattr(speed, "measure", broken)
    session = tiny_worker()
    assert session.info.details["speed_error"] == "the speed probe failed: the worker answered nothing"
    assert "decode_tokens_per_s" not in session.info.details
    reply = session.chat(ChatRequest(messages=[{"role": "user", "content": "hi"}], temperature=0.0,
                                     top_p=1.0, max_tokens=4, seed=0))
    assert reply.finish_reason in ("stop", "length")  # loaded and usable


def test_off_means_nothing_is_measured(tiny_worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(speed.PROBE_ENV, "0")
    details = tiny_worker().info.details
    assert "speed_source" not in details and "speed_error" not in details


def test_a_bench_loads_without_the_probe_and_measures_once(tiny_gguf: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from gra_local.backends.llama.process import LlamaProcessBackend
    from gra_local.core.config import ModelSpec
    from gra_local.models import bench

    measured: list[int] = []
    real = bench.measure

    def counted(session: object, name: str, load: float, tokens: int) -> bench.BenchResult:
        measured.append(tokens)
        return real(session, name, load, tokens)  # type: ignore[arg-type]

    monkeypatch.setattr(bench, "measure", counted)
    monkeypatch.setattr(speed, "measure", counted)
    backend = LlamaProcessBackend(log_dir=tmp_path, probe_speed=False)
    bench.run_bench(ModelSpec(name="tiny", path=str(tiny_gguf)), backend, decode_tokens=8)
    assert measured == [8]  # the bench's own measure, not the load's probe before it
