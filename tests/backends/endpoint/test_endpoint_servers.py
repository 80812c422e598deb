"""Where calls go: least outstanding first, benched servers skipped, benches grow."""

from __future__ import annotations

import httpx

from gra_local.backends.endpoint.config import Tuning
from gra_local.backends.endpoint.faults import Fault
from gra_local.backends.endpoint.servers import Server, ServerFacts, all_down, pick

TUNING = Tuning(bench_base_s=2.0, bench_cap_s=10.0, bench_after=2, retry_after_cap_s=60.0)


def server(name: str, outstanding: int = 0, benched_until: float = 0.0) -> Server:
    return Server(url=f"http://{name}:1/v1", public=f"http://{name}:1/v1",
                  client=httpx.AsyncClient(), facts=ServerFacts("vllm", None, "m"),
                  outstanding=outstanding, benched_until=benched_until)


def test_least_outstanding_first_and_the_cap() -> None:
    a, b, c = server("a", 2), server("b", 1), server("c", 3)
    assert pick([a, b, c], 3, 0.0) is b
    b.outstanding = 3
    assert pick([a, b, c], 3, 0.0) is a
    a.outstanding = 3
    assert pick([a, b, c], 3, 0.0) is None  # all full: wait for a slot


def test_benched_servers_are_skipped_and_the_one_that_failed_avoided() -> None:
    a, b = server("a", 0, benched_until=50.0), server("b", 2)
    assert pick([a, b], 4, 10.0) is b
    assert pick([a, b], 2, 10.0) is None  # b is full: a benched one is not used meanwhile
    c = server("c", 0)
    assert pick([b, c], 4, 10.0, avoid=c) is b
    assert pick([c], 4, 10.0, avoid=c) is c


def test_when_all_are_benched_the_one_back_first_is_probed() -> None:
    a, b = server("a", 0, benched_until=30.0), server("b", 0, benched_until=20.0)
    assert pick([a, b], 4, 10.0) is b
    assert all_down([a, b], 10.0) and not all_down([a, b], 25.0)
    b.failed(Fault("busy", "HTTP 429", retry_after_s=30.0), 25.0, TUNING)
    assert not all_down([a, b], 26.0)  # asked to wait is not down


def test_benches_grow_and_a_reply_lifts_them() -> None:
    s = server("a")
    s.failed(Fault("server", "HTTP 500"), 0.0, TUNING)
    assert not s.benched(0.0)  # one 5xx does not bench
    s.failed(Fault("server", "HTTP 500"), 0.0, TUNING)
    assert s.benched_until == 2.0
    for expected in (4.0, 8.0, 10.0, 10.0):
        s.failed(Fault("refused", "cannot connect"), 0.0, TUNING)  # a refusal benches at once
        assert s.benched_until == expected
    s.succeeded(completion_tokens=50, seconds=2.0)
    assert (s.benched(0.1), s.benches_in_row, s.tok_s) == (False, 0, 25.0)
    s.succeeded(completion_tokens=10, seconds=1.0)
    assert s.tok_s == 0.7 * 25.0 + 0.3 * 10.0


def test_429_keeps_a_server_off_for_its_retry_after_only() -> None:
    s = server("a")
    s.failed(Fault("busy", "HTTP 429", retry_after_s=5.0), 100.0, TUNING)
    assert (s.benched_until, s.benches_in_row, s.faults_in_row) == (105.0, 0, 0)
    s.failed(Fault("busy", "HTTP 429", retry_after_s=3600.0), 100.0, TUNING)
    assert s.benched_until == 160.0  # capped
    s.failed(Fault("rejected", "HTTP 400"), 100.0, TUNING)
    assert s.faults_in_row == 0
