"""An endpoint model as a `core.backend.Session`: `connect()` detects its servers, and
`chat_many` keeps up to `max_in_flight` requests in flight on each of them.

httpx's async client runs in a private event-loop thread: one thread drives every request
of every server (dozens in flight cost no threads), a cancel aborts in-flight requests at
once (cancelling a task closes its connection), and a deadline is `asyncio.wait_for`; a sync
client in a thread pool can abort a request only by closing the whole client.
Replies are not streamed (`ChatRequest.stream_partials` is ignored): a call's result comes
whole, with the server's token counts.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import orjson

from gra_local.backends.endpoint.capabilities import CAPABILITIES, vllm_field
from gra_local.backends.endpoint.config import (
    ApiKey,
    EndpointConfig,
    ServerKind,
    Tuning,
    public_url,
    read_api_key,
    redact,
)
from gra_local.backends.endpoint.detect import Unreachable, detect
from gra_local.backends.endpoint.faults import (
    Fault,
    backoff_s,
    deadline_s,
    status_fault,
    transport_fault,
)
from gra_local.backends.endpoint.payload import Malformed, chat_body, parse_reply
from gra_local.backends.endpoint.servers import Server, ServerFacts, all_down, pick
from gra_local.core.backend import ChatRequest, ChatResult, LoadInfo
from gra_local.core.errors import BackendError, GraError, ModelError, WorkerLost

T = TypeVar("T")
_TIMEOUTS = (httpx.HTTPError, asyncio.TimeoutError, TimeoutError)


class _Loop:
    """An asyncio event loop in a daemon thread of its own."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name=f"gra-endpoint-{name}")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


def _result(finish_reason: str, seconds: float = 0.0) -> ChatResult:
    return ChatResult(text="", finish_reason=finish_reason, prompt_tokens=0, completion_tokens=0,
                      seconds=seconds)


def connect(config: EndpointConfig, tuning: Tuning | None = None,
            rng: random.Random | None = None) -> EndpointSession:
    """A session on the config's servers: reads the key, lists each server's models and
    detects its kind. ModelError (one line naming the endpoint) when no server can serve
    the model; servers unreachable now start benched and are tried again later."""
    tuning = tuning or Tuning()
    key = read_api_key(config)
    secrets = [key.reveal()] if key else []
    loop = _Loop(config.name)
    started = time.monotonic()
    try:
        servers = loop.run(_open(config, key, tuning, secrets))
    except BaseException:
        loop.stop()
        raise
    return EndpointSession(config, servers, loop, tuning, rng or random.Random(), secrets,
                           time.monotonic() - started)


async def _open(config: EndpointConfig, key: ApiKey | None, tuning: Tuning,
                secrets: list[str]) -> list[Server]:
    headers = {"Authorization": f"Bearer {key.reveal()}"} if key else {}
    limits = httpx.Limits(max_connections=config.max_in_flight,
                          max_keepalive_connections=config.max_in_flight)
    clients = [httpx.AsyncClient(headers=headers, limits=limits, trust_env=False,
                                 timeout=httpx.Timeout(tuning.probe_timeout_s,
                                                       connect=tuning.connect_timeout_s))
               for _ in config.urls]
    found = await asyncio.gather(
        *(detect(client, url, public_url(url), config.server, config.model, key is not None)
          for client, url in zip(clients, config.urls, strict=True)),
        return_exceptions=True)
    try:
        facts = _agree(config, found, secrets)
    except BaseException:
        await asyncio.gather(*(client.aclose() for client in clients))
        raise
    reached = next(f for f in facts if f is not None)
    servers = [Server(url=url, public=public_url(url), client=client, facts=f or reached)
               for url, client, f in zip(config.urls, clients, facts, strict=True)]
    now = time.monotonic()
    for server, f, item in zip(servers, facts, found, strict=True):
        if f is None:
            reason = str(item).removeprefix(f"{server.public}: ")
            server.last_fault = redact(f"{reason} (at connect time)", secrets)
            server.last_kind = "refused"
            server.bench(now, tuning)
    return servers


def _agree(config: EndpointConfig, found: list[ServerFacts | BaseException],
           secrets: list[str]) -> list[ServerFacts | None]:
    """Each server's facts (None: unreachable now), or the ModelError that stops the load."""
    def fail(message: str) -> ModelError:
        return ModelError(redact(f"endpoint model {config.name!r}: {message}", secrets))

    for item in found:
        if isinstance(item, BaseException) and not isinstance(item, GraError):
            raise item
        if isinstance(item, GraError) and not isinstance(item, Unreachable):
            raise fail(item.message)
    facts = [item if isinstance(item, ServerFacts) else None for item in found]
    if all(f is None for f in facts):
        raise fail("; ".join(str(item) for item in found))
    models = {f.model for f in facts if f is not None}
    if len(models) > 1:
        raise fail(f"its servers serve different models ({', '.join(sorted(models))}): "
                   "name one with `model`")
    return facts


@dataclass(frozen=True)
class ServerStatus:
    endpoint: str
    """scheme://host:port/path, credential-free."""
    kind: ServerKind
    version: str | None
    benched: bool
    replies: int
    """Calls it has answered in this session."""
    last_fault: str
    """The last fault met there ("" if none), credential-free."""


class EndpointSession:
    """A model behind OpenAI-compatible servers. Holds no secret in its repr or info."""

    def __init__(self, config: EndpointConfig, servers: list[Server], loop: _Loop, tuning: Tuning,
                 rng: random.Random, secrets: list[str], seconds: float) -> None:
        self.config = config
        self._servers = servers
        self._loop = loop
        self._tuning = tuning
        self._rng = rng
        self._secrets = secrets
        self._changed: asyncio.Event | None = None
        self._dead_calls = 0
        self._lost: str | None = None
        self._closed = False
        self.on_result: Callable[[int, int], None] | None = None
        """Receives (request index, completion tokens) as each request of a `chat_many`
        finishes, before the call returns (on the session's event-loop thread)."""
        first = servers[0].facts
        self.info = LoadInfo(
            name=config.name, seconds=seconds, n_gpu_layers=0,
            n_ctx=next((s.facts.n_ctx for s in servers if s.facts.n_ctx), 0) or 0,
            n_parallel=config.max_in_flight * len(servers),
            details={"backend": "endpoint", "endpoint": self.provenance(),
                     "server_kind": first.kind, "server_version": first.version,
                     "model_id": first.model, "max_in_flight": config.max_in_flight,
                     "structured_output": self._route(first)})

    @staticmethod
    def _route(facts: ServerFacts) -> str:
        structured = CAPABILITIES[facts.kind].structured
        if structured == "vllm":
            return vllm_field(facts.version)
        return "grammar" if structured == "grammar" else "response_format json_schema"

    def servers(self) -> list[ServerStatus]:
        """Each server's state now (for doctor, the Models screen and tests)."""
        now = time.monotonic()
        return [ServerStatus(s.public, s.facts.kind, s.facts.version, s.benched(now), s.replies,
                             s.last_fault) for s in self._servers]

    def provenance(self) -> str:
        """The servers as scheme://host:port/path, comma-separated: no credentials."""
        return ", ".join(server.public for server in self._servers)

    def __repr__(self) -> str:
        return f"EndpointSession({self.config.name!r}, {self.provenance()})"

    def chat(self, request: ChatRequest) -> ChatResult:
        return self.chat_many([request])[0]

    def chat_many(self, requests: Sequence[ChatRequest],
                  cancel: threading.Event | None = None) -> list[ChatResult]:
        """Every request at once, up to `max_in_flight` per server, results in request
        order. A request that still fails after its retries has finish_reason "error".
        WorkerLost once every server has stayed unreachable for `lost_after_calls` calls."""
        if self._closed:
            raise BackendError(f"{self.config.name}: the endpoint session is closed")
        if self._lost is not None:
            raise WorkerLost(self._lost)
        if not requests:
            return []
        self._check(requests)
        future = asyncio.run_coroutine_threadsafe(self._run_all(list(requests), cancel),
                                                  self._loop.loop)
        results = future.result()
        if self._lost is not None:
            raise WorkerLost(self._lost)
        return results

    def _check(self, requests: Sequence[ChatRequest]) -> None:
        """Every request can be sent to every server (a grammar a schema-only server cannot
        take is an error before anything is sent)."""
        kinds = {(s.facts.kind, s.facts.version, s.facts.model) for s in self._servers}
        for request in {r.grammar: r for r in requests if r.grammar is not None}.values():
            for kind, version, model in kinds:
                try:
                    chat_body(kind, version, model, request)
                except BackendError as exc:
                    raise BackendError(f"{self.config.name} ({CAPABILITIES[kind].label}): "
                                       f"{exc.message}") from None

    async def _run_all(self, requests: list[ChatRequest],
                       cancel: threading.Event | None) -> list[ChatResult]:
        if self._changed is None:
            self._changed = asyncio.Event()
        tasks = [asyncio.ensure_future(self._one(request)) for request in requests]
        watcher = asyncio.ensure_future(self._watch(cancel)) if cancel is not None else None
        pending: set[asyncio.Future[Any]] = set(tasks)
        cancelled = False
        while pending:
            done, _ = await asyncio.wait(pending | ({watcher} if watcher else set()),
                                         return_when=asyncio.FIRST_COMPLETED)
            pending -= done
            if self.on_result is not None:
                for index, one in enumerate(tasks):
                    if one in done and not one.cancelled() and one.exception() is None:
                        self.on_result(index, one.result().completion_tokens)
            if watcher is not None and watcher in done:
                cancelled = True
                break
        if watcher is not None:
            watcher.cancel()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        results = [task.result() if task.done() and not task.cancelled() else _result("cancelled")
                   for task in tasks]
        if not cancelled:
            self._account(results)
        return results

    @staticmethod
    async def _watch(cancel: threading.Event) -> None:
        while not cancel.is_set():
            await asyncio.sleep(0.02)

    def _account(self, results: list[ChatResult]) -> None:
        """Count calls in which a request got no reply and every server is down at the end:
        an outage, whose "error" results must not be handed out as the model's failures
        (the caller gets WorkerLost and asks the whole call again)."""
        if any(r.finish_reason == "error" for r in results) and all_down(self._servers, time.monotonic()):
            self._dead_calls += 1
        else:
            self._dead_calls = 0
        if self._dead_calls >= self._tuning.lost_after_calls:
            faults = "; ".join(f"{s.public}: {s.last_fault or 'failing'}" for s in self._servers)
            self._lost = redact(f"{self.config.name}: every server of this endpoint model "
                                f"stayed unreachable ({faults})", self._secrets)

    async def _one(self, request: ChatRequest) -> ChatResult:
        """One request with its retries: "error" when none of its attempts got a reply."""
        started = time.monotonic()
        last: Server | None = None
        not_before = started
        for attempt in range(self._tuning.retries + 1):
            server = await self._acquire(not_before, last)
            try:
                result = await self._send(server, request)
            except Fault as fault:
                now = time.monotonic()
                server.failed(fault, now, self._tuning)
                if fault.kind == "too_long":  # never decoded: the engine rejects it too_long
                    return _result("too_long", now - started)
                if not fault.retryable:
                    break
                last = server
                wait = backoff_s(attempt, self._tuning, self._rng)
                if fault.retry_after_s is not None:
                    wait = max(wait, min(fault.retry_after_s, self._tuning.retry_after_cap_s))
                not_before = now + wait
                continue
            finally:
                self._release(server)
            server.succeeded(result.completion_tokens, result.seconds)
            return result
        return _result("error", time.monotonic() - started)

    async def _acquire(self, not_before: float, avoid: Server | None) -> Server:
        delay = not_before - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        while True:
            server = pick(self._servers, self.config.max_in_flight, time.monotonic(), avoid)
            if server is not None:
                server.outstanding += 1
                return server
            assert self._changed is not None
            await self._changed.wait()

    def _release(self, server: Server) -> None:
        server.outstanding -= 1
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def _send(self, server: Server, request: ChatRequest) -> ChatResult:
        facts = server.facts
        body = orjson.dumps(chat_body(facts.kind, facts.version, facts.model, request))
        deadline = deadline_s(request.max_tokens, server.tok_s, self._tuning)
        timeout = httpx.Timeout(deadline, connect=self._tuning.connect_timeout_s)
        started = time.monotonic()
        try:
            reply = await asyncio.wait_for(
                server.client.post(server.url + "/chat/completions", content=body, timeout=timeout,
                                   headers={"Content-Type": "application/json"}),
                deadline)
        except _TIMEOUTS as exc:
            raise self._redacted(transport_fault(exc)) from None
        seconds = time.monotonic() - started
        if not 200 <= reply.status_code < 300:
            raise self._redacted(status_fault(reply.status_code, reply.headers, reply.content))
        try:
            return parse_reply(reply.content, seconds)
        except Malformed as exc:
            raise Fault("malformed", exc.reason) from None

    def _redacted(self, fault: Fault) -> Fault:
        return Fault(fault.kind, redact(fault.detail, self._secrets), fault.retry_after_s)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._aclose(), timeout=10)
        except (FutureTimeout, RuntimeError):
            pass
        self._loop.stop()

    async def _aclose(self) -> None:
        await asyncio.gather(*(s.client.aclose() for s in self._servers), return_exceptions=True)
