"""The checks before a run with endpoint models (issue 13): no file checks, no local memory,
the context check on the server's context when it reports one, skipped when it does not;
a server that is down is refused in one line before anything is written. (The real server
is reached in tests/backends/test_routing.py and tests/test_e2e_endpoint.py; here the one
network call, `endpoint_ref`, is replaced.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import EXAMPLE_SEEDS
from ggufs import write_tiny_gguf

from gra_local import prepare
from gra_local.core.config import ModelSpec, Registry, Role
from gra_local.core.errors import ConfigError, ModelError
from gra_local.core.options import RunOptions
from gra_local.core.records import ModelRef
from gra_local.prepare import check_contexts, prepare_run

OPTIONS = RunOptions(samples=1, dedup_threshold=None)
URL = "http://judge-box:8080/v1"


def mixed(gguf: Path, max_tokens: int = 512) -> Registry:
    return Registry(models=[
        ModelSpec(name="tiny", path=str(gguf), n_ctx=2048, roles=[Role.GENERATOR, Role.ANNOTATOR],
                  sampling={"generator": {"max_tokens": max_tokens}}),
        ModelSpec(name="judge", endpoint=URL, roles=[Role.REVIEWER, Role.ADJUDICATOR])])


def served(n_ctx: int, asked: list[str]):
    def endpoint_ref(spec: ModelSpec) -> tuple[ModelRef, int]:
        asked.append(spec.name)
        return ModelRef(name=spec.name, endpoint=URL, server="vllm", server_version="0.9.2",
                        served_model="qwen2.5-7b-instruct"), n_ctx
    return endpoint_ref


def test_an_endpoint_model_has_no_file_and_costs_no_memory(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(prepare, "endpoint_ref", served(0, asked))
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    request = prepare_run(EXAMPLE_SEEDS, tmp_path / "out", OPTIONS, mixed(gguf), "test")
    assert asked == ["judge"]  # contacted once, at start
    judge = request.refs["judge"]
    assert (judge.endpoint, judge.server, judge.server_version, judge.served_model) == \
        (URL, "vllm", "0.9.2", "qwen2.5-7b-instruct")
    assert judge.sha256 is None and judge.quantization is None
    assert request.refs["tiny"].sha256 is not None and request.refs["tiny"].quantization == "F32"
    assert request.residency is not None
    assert request.residency.cost_bytes["judge"] == 0 and request.residency.cost_bytes["tiny"] > 0
    assert request.predicted_seconds is None and "judge" in request.eta_note
    assert not (tmp_path / "out").exists()


def test_the_context_check_uses_the_servers_context_or_skips(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    long_answers = mixed(gguf, max_tokens=1500)  # fits the generator's 2048, not a 2048 judge
    monkeypatch.setattr(prepare, "endpoint_ref", served(2048, []))
    with pytest.raises(ConfigError, match="max_tokens 1500 does not fit the n_ctx of .* 'judge', 2048"):
        prepare_run(EXAMPLE_SEEDS, tmp_path / "out", OPTIONS, long_answers, "test")
    monkeypatch.setattr(prepare, "endpoint_ref", served(32768, []))
    prepare_run(EXAMPLE_SEEDS, tmp_path / "out", OPTIONS, long_answers, "test")
    monkeypatch.setattr(prepare, "endpoint_ref", served(0, []))  # reports none: not checked
    prepare_run(EXAMPLE_SEEDS, tmp_path / "out", OPTIONS, long_answers, "test")


def test_check_contexts_skips_models_without_a_known_context() -> None:
    registry = Registry(models=[
        ModelSpec(name="gen", endpoint=URL, roles=[Role.GENERATOR],
                  sampling={"generator": {"max_tokens": 30000}}),
        ModelSpec(name="judge", path="/m/judge.gguf", roles=[Role.REVIEWER, Role.ADJUDICATOR])])
    with pytest.raises(ConfigError, match="generator 'gen': max_tokens 30000 does not fit the n_ctx of"):
        check_contexts(registry, OPTIONS, {"judge": 4096})
    check_contexts(registry, OPTIONS, {})  # nothing known: nothing to check, no error


def test_a_server_down_at_start_is_refused_in_one_line(tmp_path: Path) -> None:
    from endpoint_llama import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    registry = Registry(models=[ModelSpec(name="judge", endpoint=url)])
    with pytest.raises(ModelError) as down:
        prepare_run(EXAMPLE_SEEDS, tmp_path / "out", OPTIONS, registry, "test")
    assert url in down.value.message and "\n" not in down.value.message
    assert not (tmp_path / "out").exists()
