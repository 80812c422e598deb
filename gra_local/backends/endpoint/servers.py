"""The servers of one endpoint model: what each is, how loaded it is, whether it is
benched, how fast it has been; and the choice of where the next call goes."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from gra_local.backends.endpoint.config import ServerKind, Tuning
from gra_local.backends.endpoint.faults import Fault, FaultKind


@dataclass(frozen=True)
class ServerFacts:
    """What detection found (or the config said) about one server."""

    kind: ServerKind
    version: str | None
    model: str
    n_ctx: int | None = None


@dataclass(eq=False)
class Server:
    url: str
    """Base URL as requests use it (its userinfo, if any, stays in here)."""
    public: str
    """scheme://host:port/path: what messages and records name."""
    client: httpx.AsyncClient
    facts: ServerFacts
    outstanding: int = 0
    faults_in_row: int = 0
    benches_in_row: int = 0
    benched_until: float = 0.0
    tok_s: float | None = None
    """Completion tokens per second of its calls, wall time (queueing included), smoothed."""
    replies: int = 0
    last_fault: str = ""
    last_kind: FaultKind | None = None

    def benched(self, now: float) -> bool:
        return now < self.benched_until

    def succeeded(self, completion_tokens: int, seconds: float) -> None:
        self.faults_in_row = 0
        self.benches_in_row = 0
        self.benched_until = 0.0
        self.replies += 1
        if completion_tokens > 0 and seconds > 0:
            speed = completion_tokens / seconds
            self.tok_s = speed if self.tok_s is None else 0.7 * self.tok_s + 0.3 * speed

    def failed(self, fault: Fault, now: float, tuning: Tuning) -> None:
        """A refused connection benches at once; other server faults after `bench_after`
        in a row; a 429 keeps the server off for its Retry-After only."""
        self.last_fault = fault.detail
        self.last_kind = fault.kind
        if fault.kind == "busy":
            wait = min(fault.retry_after_s or tuning.backoff_base_s, tuning.retry_after_cap_s)
            self.benched_until = max(self.benched_until, now + wait)
            return
        if not fault.server_fault:
            return
        self.faults_in_row += 1
        if fault.kind == "refused" or self.faults_in_row >= tuning.bench_after:
            self.bench(now, tuning)

    def bench(self, now: float, tuning: Tuning) -> None:
        self.benches_in_row += 1
        wait = min(tuning.bench_cap_s, tuning.bench_base_s * 2 ** (self.benches_in_row - 1))
        self.benched_until = max(self.benched_until, now + wait)
        self.faults_in_row = 0


def pick(servers: list[Server], cap: int, now: float, avoid: Server | None = None) -> Server | None:
    """Where the next call goes: among the servers not benched and under `cap` in flight,
    the least outstanding (avoiding the one that just failed when another will do).
    When every server is benched, the one whose bench ends first, if it has room: a
    request's own backoff then paces the probes. None: wait for a slot."""
    live = [s for s in servers if not s.benched(now)]
    if live:
        ready = [s for s in live if s.outstanding < cap]
        others = [s for s in ready if s is not avoid] or ready
        return min(others, key=lambda s: (s.outstanding, s.faults_in_row)) if others else None
    roomy = [s for s in servers if s.outstanding < cap]
    return min(roomy, key=lambda s: s.benched_until) if roomy else None


def all_down(servers: list[Server], now: float) -> bool:
    """Every server benched for failing (not for a 429's Retry-After: a busy server is up)."""
    return all(s.benched(now) and s.last_kind != "busy" for s in servers)
