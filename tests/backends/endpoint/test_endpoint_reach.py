"""The reachability check behind `models add --endpoint`, `models list`, `doctor` and the
Models screen, against scripted servers on loopback: what an answering server is, a closed
port and a silent one in one line each, the key sent but never shown, nothing contacted
offline or for GGUF models, and registration refusing what a run could not use."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from endpoint_fakes import FakeServer, refused_url

from gra_local.backends.endpoint import EndpointConfig
from gra_local.backends.endpoint.reach import (
    check_endpoints,
    check_specs,
    host_of,
    register_endpoint,
    run_hosts,
)
from gra_local.core.config import ModelSpec, Role
from gra_local.core.errors import ConfigError
from gra_local.models.registry import read_user_registry

KEY = "sk-reach-SECRET-81d3"
LLAMA_SERVER = dict(owned_by="llamacpp", routes={"/props": (200, {
    "build_info": "b5432-6a1b2c3", "default_generation_settings": {"n_ctx": 8192}})})


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer(**LLAMA_SERVER)  # type: ignore[arg-type]
    yield server
    server.close()


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()


def spec(name: str, *urls: str, **fields: object) -> ModelSpec:
    return ModelSpec.model_validate({"name": name, "endpoint": list(urls), **fields})


def test_an_answering_server_its_kind_version_model_and_round_trip(fake: FakeServer) -> None:
    (reach,) = check_endpoints([EndpointConfig(name="judge", urls=(fake.url,))])
    (server,) = reach.servers
    assert (server.state, server.kind, server.version) == ("up", "llama.cpp", "b5432-6a1b2c3")
    assert (server.model, server.listed, server.n_ctx) == ("fake-model", ("fake-model",), 8192)
    assert server.rtt_ms is not None and 0 < server.rtt_ms < 3000
    assert server.endpoint == fake.url and server.host == fake.url.split("/")[2]
    assert server.summary().startswith("up ") and server.summary().endswith(
        "ms: llama.cpp server (b5432-6a1b2c3), model fake-model")
    assert reach.usable and reach.summary() == "1 of 1 server(s) up"
    assert [s.path for s in fake.seen][0] == "/v1/models"


def test_a_closed_port_and_a_silent_one_are_one_line_each(silent: str) -> None:
    started = time.monotonic()
    (reach,) = check_endpoints([EndpointConfig(name="gone", urls=(refused_url(), silent))],
                               timeout_s=0.5)
    assert time.monotonic() - started < 5  # checked at once, each bounded
    closed, quiet = reach.servers
    assert closed.state == quiet.state == "down" and not reach.usable
    assert closed.summary().startswith("unreachable: cannot connect (")
    assert quiet.summary() == "unreachable: no answer within 0.5 s"
    assert all("\n" not in s.summary() for s in reach.servers)
    assert reach.summary() == "0 of 2 server(s) up"


def test_the_key_is_sent_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer(routes={"/v1/models": (401, {"error": f"bad key {KEY}"})})
    try:
        monkeypatch.setenv("REACH_KEY", KEY)
        (reach,) = check_endpoints([EndpointConfig(name="keyed", urls=(server.url,),
                                                   api_key_env="REACH_KEY")])
        assert server.seen[0].headers["Authorization"] == f"Bearer {KEY}"
    finally:
        server.close()
    (found,) = reach.servers
    assert found.state == "problem" and "HTTP 401 listing models (the key was refused)" in found.detail
    assert KEY not in repr(reach) and KEY not in found.summary()


def test_an_unset_key_variable_contacts_nothing(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REACH_KEY", raising=False)
    (reach,) = check_endpoints([EndpointConfig(name="keyed", urls=(fake.url,), api_key_env="REACH_KEY")])
    assert reach.servers[0].summary() == ("not checked: environment variable REACH_KEY (its "
                                          "api_key_env) is not set")
    assert fake.seen == []


def test_a_server_of_several_models_needs_one_named() -> None:
    server = FakeServer(models=("a-7b", "b-8b"))
    try:
        (reach,) = check_endpoints([EndpointConfig(name="many", urls=(server.url,))])
        (named,) = check_endpoints([EndpointConfig(name="many", urls=(server.url,), model="b-8b")])
    finally:
        server.close()
    assert reach.servers[0].state == "problem" and reach.servers[0].listed == ("a-7b", "b-8b")
    assert "serves 2 models, so `model` must name one: a-7b, b-8b" in reach.servers[0].summary()
    assert named.servers[0].summary().endswith("model b-8b; also lists a-7b")


def test_offline_and_gguf_only_contact_nothing(fake: FakeServer, tiny_gguf,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        tried.append(address)
        raise ConnectionRefusedError("offline test: no connect allowed")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    gguf = ModelSpec(name="local", path=str(tiny_gguf))
    assert check_specs([gguf]) == {}
    reaches = check_specs([gguf, spec("remote", fake.url)], offline=True)
    assert list(reaches) == ["remote"]
    assert reaches["remote"].servers[0].summary() == "not checked: offline"
    assert reaches["remote"].summary() == "not checked"
    assert tried == [] and fake.seen == []


def test_run_hosts_names_every_host_once_and_none_for_gguf(tiny_gguf) -> None:
    specs = [ModelSpec(name="local", path=str(tiny_gguf)),
             spec("a", "http://gpu-box:8080/v1", "https://api.example.com/v1"),
             spec("b", "http://gpu-box:8080/v1", "http://[::1]:9000/v1")]
    assert run_hosts(specs) == ["gpu-box:8080", "api.example.com:443", "[::1]:9000"]
    assert run_hosts(specs[:1]) == []
    assert host_of("http://box/v1") == "box:80"


def test_register_checks_first_and_learns_the_model_id(fake: FakeServer) -> None:
    model, registry, reach = register_endpoint([fake.url.removesuffix("/v1")], roles=[Role.REVIEWER])
    assert reach is not None and reach.servers[0].state == "up"
    assert (model.name, model.model, model.endpoint) == ("fake-model", "fake-model", fake.url)
    assert read_user_registry().models == [model] and model.roles == [Role.REVIEWER]
    with pytest.raises(ConfigError, match="already registered as 'fake-model'"):
        register_endpoint([fake.url])


def test_register_refuses_what_a_run_could_not_use(fake: FakeServer) -> None:
    with pytest.raises(ConfigError) as refused:
        register_endpoint([refused_url()], timeout_s=1.0)
    assert "unreachable: cannot connect" in refused.value.message
    assert refused.value.message.endswith("; pass --no-check to register it anyway")
    other = FakeServer(models=("other-model",))
    try:
        with pytest.raises(ConfigError, match=r"serve different models \(fake-model, other-model\)"):
            register_endpoint([fake.url, other.url])
    finally:
        other.close()
    with pytest.raises(ConfigError, match="^--endpoint http://box:80/v1: a base URL takes no credentials"):
        register_endpoint(["http://user:hunter2@box/v1"])
    assert read_user_registry().models == []


def test_register_without_a_check_contacts_nothing(fake: FakeServer) -> None:
    model, _, reach = register_endpoint([fake.url, "http://gpu-box:8080"], check=False,
                                        max_in_flight=8, api_key_env="JUDGE_KEY", server="vllm")
    assert reach is None and fake.seen == []
    assert model.name == "127.0.0.1" and model.model is None  # the host; the id is learnt at run time
    assert model.endpoints == [fake.url, "http://gpu-box:8080/v1"]
    assert (model.max_in_flight, model.api_key_env, model.server) == (8, "JUDGE_KEY", "vllm")
    assert read_user_registry().models == [model]
