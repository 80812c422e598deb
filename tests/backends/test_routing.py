"""RoutingBackend sends GGUF models to the local backend and endpoint models to their server
(a real llama-cpp-python server on loopback); endpoint_ref reads an endpoint model's
provenance from its server once, credential-free."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest
from endpoint_llama import LlamaServer, free_port
from fakes import FakeBackend

from gra_local.backends.endpoint import EndpointSession
from gra_local.backends.routing import RoutingBackend, endpoint_ref
from gra_local.core.backend import ChatRequest
from gra_local.core.config import ModelSpec
from gra_local.core.errors import ConfigError, ModelError
from gra_local.core.grammars import GRAMMARS, parse_json, token_budget
from gra_local.core.records import InstructionVerdict


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    running = LlamaServer(tiny_gguf, tmp_path_factory.mktemp("routing") / "server.log").start()
    yield running
    running.stop()


def test_a_gguf_model_goes_to_the_local_backend() -> None:
    local = FakeBackend()
    session = RoutingBackend(local).load(ModelSpec(name="smol", path="/m/smol.gguf"))
    assert local.loads == ["smol"] and session.info.name == "smol"


def test_an_endpoint_model_goes_to_its_server(server: LlamaServer) -> None:
    local = FakeBackend()
    spec = ModelSpec(name="judge", endpoint=server.url.removesuffix("/v1"), max_in_flight=2)
    session = RoutingBackend(local).load(spec)
    try:
        assert isinstance(session, EndpointSession) and local.loads == []
        assert session.info.details["endpoint"] == server.url
        assert session.info.n_parallel == 2
        verdict = session.chat(ChatRequest(
            messages=[{"role": "user", "content": "Judge this."}], temperature=0.2, top_p=0.9,
            max_tokens=token_budget(InstructionVerdict), seed=1, grammar=GRAMMARS[InstructionVerdict]))
        assert isinstance(parse_json(verdict.text, InstructionVerdict, verdict.finish_reason),
                          InstructionVerdict)
    finally:
        session.close()


def test_endpoint_ref_names_the_server_and_the_model_it_serves(server: LlamaServer, tiny_gguf: Path) -> None:
    ref, n_ctx = endpoint_ref(ModelSpec(name="judge", endpoint=server.url))
    assert ref.name == "judge" and ref.sha256 is None and ref.quantization is None
    assert ref.endpoint == f"http://127.0.0.1:{server.port}/v1"
    assert ref.server == "llama.cpp"
    assert ref.server_version == f"llama-cpp-python {llama_cpp.__version__}"
    assert ref.served_model == str(tiny_gguf)
    assert n_ctx == 0  # llama-cpp-python's server reports no context (no /props): unchecked


def test_endpoint_ref_of_a_server_that_is_down_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ModelError) as down:
        endpoint_ref(ModelSpec(name="judge", endpoint=url))
    assert down.value.message.startswith("endpoint model 'judge': ")
    assert url in down.value.message and "\n" not in down.value.message


def test_endpoint_ref_needs_its_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRA_TEST_MISSING_KEY", raising=False)
    spec = ModelSpec(name="judge", endpoint="http://127.0.0.1:9/v1", api_key_env="GRA_TEST_MISSING_KEY")
    with pytest.raises(ConfigError, match="GRA_TEST_MISSING_KEY .* is not set"):
        endpoint_ref(spec)
