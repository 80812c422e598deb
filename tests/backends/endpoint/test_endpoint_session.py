"""EndpointSession against a scripted HTTP server on a real loopback socket: order, the
in-flight cap, every retry path, benching, WorkerLost, cancel, and the key kept secret."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
from endpoint_fakes import FAST, FakeServer, Reply, completion, refused_url, request

from gra_local.backends.endpoint import EndpointConfig, Tuning, connect
from gra_local.backends.endpoint.session import EndpointSession
from gra_local.core.errors import BackendError, ConfigError, ModelError, WorkerLost
from gra_local.core.grammars import GRAMMARS
from gra_local.core.records import Scores

KEY = "sk-test-SECRET-4f9c2e"


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


def open_session(*urls: str, tuning: Tuning = FAST, **fields: object) -> EndpointSession:
    config = EndpointConfig(name="remote", urls=urls, **fields)  # type: ignore[arg-type]
    return connect(config, tuning, random.Random(1))


def test_nothing_is_contacted_before_connect(fake: FakeServer) -> None:
    config = EndpointConfig(name="remote", urls=(fake.url,))
    time.sleep(0.1)
    assert fake.seen == []
    session = connect(config, FAST)
    try:
        assert [s.path for s in fake.seen][0] == "/v1/models"
    finally:
        session.close()


def test_results_keep_request_order_and_the_in_flight_cap(fake: FakeServer) -> None:
    def echo(body: dict) -> Reply:
        text = body["messages"][-1]["content"]
        return Reply(text=text, delay_s=0.3 if text == "q0" else 0.05)

    fake.respond = echo
    session = open_session(fake.url, max_in_flight=3)
    try:
        results = session.chat_many([request(f"q{i}") for i in range(9)])
    finally:
        session.close()
    assert [r.text for r in results] == [f"q{i}" for i in range(9)]
    assert {r.finish_reason for r in results} == {"stop"}
    assert results[0].prompt_tokens == 12 and results[0].completion_tokens == 7
    assert 2 <= fake.max_in_flight <= 3
    body = fake.posts()[0].body
    assert body is not None and body["model"] == "fake-model" and body["stream"] is False


def test_429_waits_for_retry_after(fake: FakeServer) -> None:
    fake.script = [Reply(status=429, headers={"Retry-After": "1"}, body=b"{}"), Reply()]
    session = open_session(fake.url)
    try:
        result = session.chat(request())
    finally:
        session.close()
    assert result.finish_reason == "stop"
    first, second = fake.posts()
    assert second.at - first.at >= 0.8  # asked for 1 s; loose


@pytest.mark.parametrize("faults", [
    [Reply(status=500, body=b"oops")],
    [Reply(status=503, body=b"{}"), Reply(status=502, body=b"")],
    [Reply(body=b"<html>not json</html>"), Reply(body=b'{"choices": []}'), Reply(body=b'{"id": 1}')],
    [Reply(drop=True)],
], ids=["500", "503-502", "garbage", "dropped"])
def test_faults_are_retried_then_answered(fake: FakeServer, faults: list[Reply]) -> None:
    fake.script = [*faults, Reply(text="fine")]
    session = open_session(fake.url)
    try:
        result = session.chat(request())
    finally:
        session.close()
    assert (result.finish_reason, result.text) == ("stop", "fine")
    assert len(fake.posts()) == len(faults) + 1


def test_a_reply_past_its_deadline_is_retried(fake: FakeServer) -> None:
    fake.script = [Reply(delay_s=3.0), Reply(text="on time")]
    session = open_session(fake.url)
    started = time.monotonic()
    try:
        result = session.chat(request(max_tokens=8))
    finally:
        session.close()
    assert result.text == "on time"
    assert time.monotonic() - started < 2.5  # the 0.5 s deadline cut the first call short


def test_a_request_the_server_rejects_is_an_error_result(fake: FakeServer) -> None:
    """A 4xx is the request's own problem: not retried, the server not benched, the
    result "error" (the call's failure, not an outage)."""
    fake.script = [Reply(status=400, body=b'{"error": "bad grammar"}')]
    session = open_session(fake.url)
    try:
        result = session.chat(request())
        status = session.servers()[0]
    finally:
        session.close()
    assert (result.finish_reason, result.text, result.completion_tokens) == ("error", "", 0)
    assert len(fake.posts()) == 1
    assert status.last_fault is not None and status.last_fault.startswith("HTTP 400")
    assert status.benched is False  # a server that rejects a request is not down


def test_a_server_failing_every_retry_is_a_fault_not_a_reply(fake: FakeServer) -> None:
    """5xx on every retry benches the only server: an outage, so the call raises WorkerLost
    (the engine asks it again) instead of handing out an "error" result as the model's."""
    fake.script = [Reply(status=500, body=b"{}") for _ in range(10)]
    session = open_session(fake.url)
    try:
        with pytest.raises(WorkerLost, match="HTTP 500"):
            session.chat(request())
        status = session.servers()[0]
    finally:
        session.close()
    assert len(fake.posts()) == FAST.retries + 1
    assert status.benched is True


def test_a_url_refusing_connections_is_benched_and_the_other_answers(fake: FakeServer) -> None:
    down = refused_url()
    session = open_session(down, fake.url, max_in_flight=2)
    try:
        results = session.chat_many([request(f"q{i}") for i in range(6)])
        states = session.servers()
        assert session.info.n_parallel == 4
    finally:
        session.close()
    assert {r.finish_reason for r in results} == {"stop"}
    assert len(fake.posts()) == 6
    assert states[0].benched and states[0].replies == 0 and "cannot connect" in states[0].last_fault
    assert states[1].replies == 6 and not states[1].benched


def test_a_server_that_dies_is_benched_while_the_other_carries_on() -> None:
    first, second = FakeServer(), FakeServer()
    try:
        session = open_session(first.url, second.url, max_in_flight=2)
        first.close()
        results = session.chat_many([request(f"q{i}") for i in range(8)])
        states = session.servers()
        session.close()
    finally:
        second.close()
    assert {r.finish_reason for r in results} == {"stop"}
    assert states[0].benched and states[1].replies == 8


def test_worker_lost_as_soon_as_every_server_is_down(fake: FakeServer) -> None:
    session = open_session(fake.url)
    try:
        assert session.chat(request()).finish_reason == "stop"
        fake.close()
        with pytest.raises(WorkerLost) as lost:  # at once: no "error" result is handed out
            session.chat_many([request(), request()])
        with pytest.raises(WorkerLost):  # the session stays dead: a fresh connect replaces it
            session.chat(request())
    finally:
        session.close()
    port = fake.url.split(":")[2].split("/")[0]
    assert f"http://127.0.0.1:{port}/v1" in str(lost.value)
    assert "\n" not in str(lost.value)


def test_cancel_aborts_requests_in_flight(fake: FakeServer) -> None:
    fake.respond = lambda body: Reply(delay_s=5.0)
    session = open_session(fake.url, tuning=Tuning(min_deadline_s=30.0))
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    try:
        results = session.chat_many([request(), request()], cancel=cancel)
    finally:
        session.close()
    assert [r.finish_reason for r in results] == ["cancelled", "cancelled"]
    assert time.monotonic() - started < 2.0


def test_a_schema_server_refuses_an_unknown_grammar_before_sending(fake: FakeServer) -> None:
    session = open_session(fake.url, server="openai")
    try:
        with pytest.raises(BackendError, match="remote .*JSON schemas"):
            session.chat(request(grammar='root ::= "x"'))
        assert fake.posts() == []
        session.chat(request(grammar=GRAMMARS[Scores]))
    finally:
        session.close()
    body = fake.posts()[0].body
    assert body is not None and "grammar" not in body
    assert body["response_format"]["json_schema"]["name"] == "Scores"


def test_the_key_is_sent_and_never_shown(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMOTE_KEY", KEY)
    fake.script = [Reply(status=400, body=f'{{"error": "bad key {KEY}"}}'.encode()),
                   *[Reply(status=500, body=KEY.encode()) for _ in range(20)]]
    session = open_session(fake.url, api_key_env="REMOTE_KEY")
    shown = [repr(session), str(session), session.provenance(), repr(session.info),
             str(session.info.model_dump()), repr(session.config)]
    try:
        session.chat(request())  # 400 echoing the key
        shown += [repr(session.servers()), str(session.servers())]
        fake.close()
        for _ in range(3):
            try:
                session.chat(request())
            except WorkerLost as exc:
                shown += [str(exc), repr(exc)]
    finally:
        session.close()
    assert fake.seen[0].headers["Authorization"] == f"Bearer {KEY}"
    assert any("stayed unreachable" in text for text in shown)
    leaks = [text for text in shown if KEY in text]
    assert leaks == []


def test_connect_errors_name_the_endpoint_and_never_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMOTE_KEY", KEY)
    refusing = FakeServer(routes={"/v1/models": (401, {"error": f"bad key {KEY}"})})
    try:
        with pytest.raises(ModelError) as refused:
            open_session(refusing.url, api_key_env="REMOTE_KEY")
    finally:
        refusing.close()
    assert "HTTP 401" in str(refused.value) and KEY not in str(refused.value)
    assert refusing.url.replace("/v1", ":") not in str(refused.value)  # the port is written out
    down = refused_url()
    with pytest.raises(ModelError, match="cannot connect") as unreachable:
        open_session(down, api_key_env="REMOTE_KEY")
    assert down in str(unreachable.value) and KEY not in str(unreachable.value)
    monkeypatch.delenv("REMOTE_KEY")
    with pytest.raises(ConfigError, match="environment variable REMOTE_KEY"):
        open_session(down, api_key_env="REMOTE_KEY")


def test_cached_tokens_give_prompt_evaluated(fake: FakeServer) -> None:
    usage = {"prompt_tokens": 40, "completion_tokens": 5,
             "prompt_tokens_details": {"cached_tokens": 32}}
    fake.script = [Reply(body=completion("x", "length", usage))]
    session = open_session(fake.url)
    try:
        result = session.chat(request())
    finally:
        session.close()
    assert (result.finish_reason, result.prompt_evaluated, result.completion_tokens) == ("length", 8, 5)


def test_a_busy_server_is_not_lost(fake: FakeServer) -> None:
    fake.respond = lambda body: Reply(status=429, headers={"Retry-After": "0"}, body=b"{}")
    session = open_session(fake.url)
    try:
        calls = [session.chat_many([request()]) for _ in range(3)]  # never WorkerLost
    finally:
        session.close()
    assert [call[0].finish_reason for call in calls] == ["error"] * 3
    assert len(fake.posts()) == 3 * (FAST.retries + 1)
