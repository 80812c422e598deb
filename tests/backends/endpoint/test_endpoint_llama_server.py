"""EndpointSession against a real llama-cpp-python server (`python -m llama_cpp.server`)
on loopback, serving a tiny random-weight GGUF: detection, grammar honoured through the
`grammar` field, request order, and a server killed mid-call then restarted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest
from endpoint_llama import LlamaServer
from ggufs import write_tiny_gguf

from gra_local.backends.endpoint import EndpointConfig, Tuning, connect
from gra_local.core.backend import ChatRequest
from gra_local.core.errors import WorkerLost
from gra_local.core.grammars import GRAMMARS, parse_json, token_budget
from gra_local.core.records import InstructionVerdict, Scores

QUICK_RETRIES = Tuning(backoff_base_s=0.05, backoff_cap_s=0.2, bench_base_s=0.3, bench_cap_s=1.0,
                       min_deadline_s=20.0)


@pytest.fixture(scope="module")
def llama_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(tiny_gguf, tmp_path_factory.mktemp("llama-server") / "server.log").start()
    yield server
    server.stop()


def judge(i: int, out_type: type[InstructionVerdict] | type[Scores]) -> ChatRequest:
    return ChatRequest(messages=[{"role": "system", "content": "You judge."},
                                 {"role": "user", "content": f"Judge sample {i}."}],
                       temperature=0.7, top_p=0.95, max_tokens=token_budget(out_type), seed=100 + i,
                       repeat_penalty=1.0, grammar=GRAMMARS[out_type])


def test_llama_cpp_python_is_detected(llama_server: LlamaServer, tiny_gguf: Path) -> None:
    session = connect(EndpointConfig(name="remote-tiny", urls=(llama_server.url,)))
    try:
        info, provenance = session.info, session.provenance()
    finally:
        session.close()
    assert info.details["server_kind"] == "llama.cpp"
    assert info.details["server_version"] == f"llama-cpp-python {llama_cpp.__version__}"
    assert info.details["model_id"] == str(tiny_gguf)
    assert info.details["structured_output"] == "grammar"
    assert provenance == llama_server.url and info.name == "remote-tiny"


def test_a_prompt_longer_than_the_servers_context_comes_back_too_long(llama_server: LlamaServer) -> None:
    long = ChatRequest(messages=[{"role": "user", "content": "word " * 20000}], temperature=0.2,
                       top_p=0.9, max_tokens=16, seed=1)
    session = connect(EndpointConfig(name="remote-tiny", urls=(llama_server.url,)), QUICK_RETRIES)
    try:
        results = session.chat_many([long, judge(1, InstructionVerdict)])
        status = session.servers()[0]
    finally:
        session.close()
    assert [r.finish_reason for r in results] == ["too_long", "stop"]  # the other goes on
    assert not status.benched  # the request's fault, not the server's


def test_grammar_bound_replies_are_valid_and_in_request_order(llama_server: LlamaServer) -> None:
    types: list[type[InstructionVerdict] | type[Scores]] = [InstructionVerdict, Scores] * 4
    session = connect(EndpointConfig(name="remote-tiny", urls=(llama_server.url,), max_in_flight=4))
    try:
        results = session.chat_many([judge(i, t) for i, t in enumerate(types)])
    finally:
        session.close()
    # a verdict's text never parses as Scores nor the reverse: order is checked by parsing
    parsed = [parse_json(r.text, t, r.finish_reason) for r, t in zip(results, types, strict=True)]
    assert [type(p) for p in parsed] == types
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 and r.seconds > 0 for r in results)


def test_a_killed_server_is_lost_at_once_and_a_restarted_one_serves(tmp_path: Path) -> None:
    """An outage is a fault, never the model's failed replies: the call in flight when the
    server dies raises WorkerLost (the engine asks it again), no "error" result is handed out."""
    endless = write_tiny_gguf(tmp_path / "endless.gguf", eos_bias=-20)  # never stops by itself
    server = LlamaServer(endless, tmp_path / "server.log").start()
    config = EndpointConfig(name="remote-endless", urls=(server.url,))
    long_call = ChatRequest(messages=[{"role": "user", "content": "Write."}], temperature=0.8,
                            top_p=0.95, max_tokens=2000, seed=3)
    try:
        session = connect(config, QUICK_RETRIES)
        killer = threading.Timer(1.0, server.kill)  # the first call takes ~5 s, the rest queue
        killer.start()
        try:
            with pytest.raises(WorkerLost) as lost:
                session.chat_many([long_call, long_call, long_call])
            with pytest.raises(WorkerLost):  # and stays lost
                session.chat_many([long_call])
        finally:
            killer.cancel()
            session.close()
        assert server.url in str(lost.value) and "stayed unreachable" in str(lost.value)
        server.start()  # the same port
        fresh = connect(config, QUICK_RETRIES)
        try:
            result = fresh.chat(long_call.model_copy(update={"max_tokens": 16}))
        finally:
            fresh.close()
        assert (result.finish_reason, result.completion_tokens) == ("length", 16)
    finally:
        server.stop()
