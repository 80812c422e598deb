"""Detection at connect time against fake servers that answer each kind's documented
probes (llama-server's /props, vLLM's owned_by and /version, Ollama's /api/version, LM
Studio's /api/v0/models), and the one-line errors of a listing that cannot be used."""

from __future__ import annotations

import pytest
from endpoint_fakes import FAST, FakeServer, request

from gra_local.backends.endpoint import EndpointConfig, connect
from gra_local.core.errors import ModelError
from gra_local.core.grammars import GRAMMARS
from gra_local.core.records import InstructionVerdict

VERDICT = GRAMMARS[InstructionVerdict]

KINDS = {
    "llama-server": (dict(owned_by="llamacpp", routes={"/props": (200, {
        "build_info": "b5432-6a1b2c3", "total_slots": 4,
        "default_generation_settings": {"n_ctx": 8192}})}),
        "llama.cpp", "b5432-6a1b2c3", 8192, "grammar"),
    "llama-server-props-only": (dict(routes={"/props": (200, {"build_info": "b4000-aaaaaaa"})}),
                                "llama.cpp", "b4000-aaaaaaa", 0, "grammar"),
    "vllm-new": (dict(owned_by="vllm", routes={"/version": (200, {"version": "0.11.0"})}),
                 "vllm", "0.11.0", 0, "structured_outputs"),
    "vllm-0.9": (dict(owned_by="vllm", routes={"/version": (200, {"version": "0.9.2"})}),
                 "vllm", "0.9.2", 0, "guided_grammar"),
    "vllm-by-version-only": (dict(routes={"/version": (200, {"version": "0.6.3.post1"})}),
                             "vllm", "0.6.3.post1", 0, "guided_json"),
    "ollama": (dict(owned_by="library", routes={"/api/version": (200, {"version": "0.6.2"})}),
               "ollama", "0.6.2", 0, "response_format json_schema"),
    "lmstudio": (dict(routes={"/api/v0/models": (200, {"object": "list", "data": [
        {"id": "fake-model", "object": "model", "type": "llm", "publisher": "lmstudio-community",
         "arch": "qwen2", "compatibility_type": "gguf", "state": "loaded",
         "max_context_length": 32768}]})}),
        "lmstudio", None, 32768, "response_format json_schema"),
    "plain": ({}, "openai", None, 0, "response_format json_schema"),
}


@pytest.mark.parametrize("name", list(KINDS))
def test_the_kind_version_and_context_are_detected(name: str) -> None:
    fields, kind, version, n_ctx, route = KINDS[name]
    server = FakeServer(**fields)  # type: ignore[arg-type]
    try:
        session = connect(EndpointConfig(name="remote", urls=(server.url,)), FAST)
        try:
            details = session.info.details
            session.chat(request(grammar=VERDICT))
        finally:
            session.close()
        body = server.posts()[0].body
    finally:
        server.close()
    assert (details["server_kind"], details["server_version"]) == (kind, version)
    assert (session.info.n_ctx, details["structured_output"], details["model_id"]) == (n_ctx, route, "fake-model")
    assert body is not None
    structured = {"grammar", "structured_outputs", "guided_grammar", "guided_json", "response_format"}
    assert structured & set(body) == {route.split()[0]}


def test_vllm_max_model_len_is_its_context() -> None:
    server = FakeServer(owned_by="vllm")
    server.routes["/v1/models"] = (200, {"data": [{"id": "qwen", "owned_by": "vllm", "max_model_len": 16384}]})
    try:
        session = connect(EndpointConfig(name="remote", urls=(server.url,)), FAST)
        session.close()
    finally:
        server.close()
    assert (session.info.n_ctx, session.info.details["model_id"]) == (16384, "qwen")


def test_an_explicit_server_skips_detection() -> None:
    server = FakeServer(owned_by="vllm", routes={"/api/version": (200, {"version": "0.5.1"})})
    try:
        session = connect(EndpointConfig(name="remote", urls=(server.url,), server="ollama"), FAST)
        session.close()
        paths = [seen.path for seen in server.seen]
    finally:
        server.close()
    assert session.info.details["server_kind"] == "ollama"
    assert session.info.details["server_version"] == "0.5.1"
    assert paths == ["/v1/models", "/api/version"]  # no /props, /version, … probes


def test_a_url_without_a_path_gets_v1() -> None:
    server = FakeServer()
    try:
        session = connect(EndpointConfig(name="remote", urls=(server.url.removesuffix("/v1"),)), FAST)
        session.close()
    finally:
        server.close()
    assert session.provenance() == server.url


@pytest.mark.parametrize(("models", "wanted", "error"), [
    (("a", "b"), None, r"serves 2 models, so `model` must name one: a, b$"),
    (("a", "b"), "c", r"does not serve model 'c'; it lists: a, b$"),
    ((), None, r"lists no model$"),
])
def test_the_model_id_must_be_clear(models: tuple[str, ...], wanted: str | None, error: str) -> None:
    server = FakeServer(models=models)
    try:
        with pytest.raises(ModelError, match=error) as failed:
            connect(EndpointConfig(name="remote", urls=(server.url,), model=wanted), FAST)
    finally:
        server.close()
    assert str(failed.value).startswith(f"endpoint model 'remote': {server.url.replace('/v1', '')}")


def test_the_named_model_is_chosen_among_several() -> None:
    server = FakeServer(models=("a", "b"))
    try:
        session = connect(EndpointConfig(name="remote", urls=(server.url,), model="b"), FAST)
        session.chat(request())
        session.close()
        body = server.posts()[0].body
    finally:
        server.close()
    assert body is not None and body["model"] == "b"


@pytest.mark.parametrize(("route", "error"), [
    ((404, {"detail": "Not Found"}), "answered HTTP 404: is this the OpenAI-compatible base URL"),
    ((200, {"models": []}), "is not an OpenAI model list"),
    ((401, {}), r"HTTP 401 listing models \(it wants a key: set api_key_env\)"),
])
def test_a_listing_that_cannot_be_used_is_one_line(route: tuple[int, object], error: str) -> None:
    server = FakeServer(routes={"/v1/models": route})
    try:
        with pytest.raises(ModelError, match=error) as failed:
            connect(EndpointConfig(name="remote", urls=(server.url,)), FAST)
    finally:
        server.close()
    assert "\n" not in str(failed.value)


def test_servers_serving_different_models_are_refused() -> None:
    first, second = FakeServer(models=("a",)), FakeServer(models=("b",))
    try:
        with pytest.raises(ModelError, match=r"serve different models \(a, b\)"):
            connect(EndpointConfig(name="remote", urls=(first.url, second.url)), FAST)
    finally:
        first.close()
        second.close()
