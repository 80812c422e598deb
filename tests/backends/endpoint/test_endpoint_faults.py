"""Fault classes, Retry-After, backoff and deadlines."""

from __future__ import annotations

import random
from email.utils import formatdate

import httpx
import pytest

from gra_local.backends.endpoint.config import Tuning
from gra_local.backends.endpoint.faults import (
    backoff_s,
    deadline_s,
    retry_after_s,
    status_fault,
    transport_fault,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("value", "seconds"), [
    ("3", 3.0), (" 0.5 ", 0.5), ("-4", 0.0), (None, None), ("", None), ("soon", None),
    (formatdate(NOW + 30, usegmt=True), 30.0), (formatdate(NOW - 30, usegmt=True), 0.0),
])
def test_retry_after_takes_seconds_or_an_http_date(value: str | None, seconds: float | None) -> None:
    assert retry_after_s(value, now=NOW) == seconds


def test_statuses_are_classified() -> None:
    busy = status_fault(429, httpx.Headers({"Retry-After": "7"}), b"")
    assert (busy.kind, busy.retry_after_s, busy.retryable, busy.server_fault) == ("busy", 7.0, True, False)
    for status in (500, 502, 503, 504, 408):
        fault = status_fault(status, httpx.Headers(), b"")
        assert (fault.kind, fault.retryable, fault.server_fault) == ("server", True, True)
    rejected = status_fault(400, httpx.Headers(), b'{"error": "grammar\nbad"}')
    assert (rejected.kind, rejected.retryable) == ("rejected", False)
    assert rejected.detail == 'HTTP 400: {"error": "grammar bad"}'


@pytest.mark.parametrize("body", [
    b'{"error": {"message": "Requested tokens (20144) exceed context window of 2048"}}',  # llama-cpp-python
    b'{"error": {"message": "the request exceeds the available context size"}}',  # llama-server
    b'{"message": "This model\'s maximum context length is 4096 tokens. However, you requested 5000"}',  # vLLM
    b'{"error": {"code": "context_length_exceeded"}}',  # OpenAI
])
def test_a_prompt_too_long_for_the_context_is_its_own_fault(body: bytes) -> None:
    fault = status_fault(400, httpx.Headers(), body)
    assert (fault.kind, fault.retryable, fault.server_fault) == ("too_long", False, False)
    assert status_fault(500, httpx.Headers(), body).kind == "server"  # only a 4xx says so


def test_transport_errors_are_classified() -> None:
    assert transport_fault(httpx.ConnectError("[Errno 111] Connection refused")).detail == \
        "cannot connect ([Errno 111] Connection refused)"
    assert transport_fault(httpx.ConnectError("failed for http://u:p@h/")).detail == \
        "cannot connect (connection refused)"  # a URL in the text is never shown
    assert transport_fault(TimeoutError()).kind == "timeout"
    assert transport_fault(httpx.ReadTimeout("slow")).kind == "timeout"
    assert transport_fault(httpx.RemoteProtocolError("Server disconnected")).kind == "connection"


def test_backoff_is_full_jitter_and_capped() -> None:
    tuning = Tuning(backoff_base_s=0.5, backoff_cap_s=3.0)
    rng = random.Random(5)
    for retry, ceiling in ((0, 0.5), (1, 1.0), (2, 2.0), (3, 3.0), (9, 3.0)):
        waits = [backoff_s(retry, tuning, rng) for _ in range(200)]
        assert 0.0 <= min(waits) and max(waits) <= ceiling
        assert max(waits) > ceiling * 0.8  # spread over the whole range


def test_the_deadline_follows_the_token_budget_and_measured_speed() -> None:
    tuning = Tuning(min_deadline_s=30.0, deadline_factor=4.0, assumed_tok_s=8.0)
    assert deadline_s(10, None, tuning) == 30.0
    assert deadline_s(400, None, tuning) == 200.0  # 4 × 400 ÷ 8 assumed tok/s
    assert deadline_s(400, 100.0, tuning) == 30.0
    assert deadline_s(4000, 100.0, tuning) == 160.0
