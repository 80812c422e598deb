"""The concurrent groups on real engines: a local tiny GGUF in its llama.cpp worker and the
same GGUF behind a real llama-cpp-python server (one thread, loopback), every role open to
both, so each stage has a local and an endpoint group whose waves are in flight at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from conftest import EXAMPLE_SEEDS
from endpoint_llama import LlamaServer

from gra_local.backends.llama.process import LlamaProcessBackend
from gra_local.backends.routing import RoutingBackend
from gra_local.core.backend import ChatRequest, ChatResult, Session
from gra_local.core.config import ModelSpec, Registry
from gra_local.core.engine.scheduler import Run
from gra_local.core.options import RunOptions
from gra_local.prepare import prepare_run

MEET_S = 5.0
"""How long a model's first wave of a stage waits for the other model's to be in flight
too (a stage where the other has nothing to do just goes on after it)."""


class Watched:
    """A session whose `chat_many` records who else was inside at the same time."""

    def __init__(self, session: Session, log: Watch) -> None:
        self.session, self.log = session, log
        self.info = session.info

    def __getattr__(self, name: str) -> object:
        return getattr(self.session, name)

    def __setattr__(self, name: str, value: object) -> None:  # on_partial reaches the session
        if name in ("session", "log", "info"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.session, name, value)

    def chat_many(self, requests: Sequence[ChatRequest],
                  cancel: threading.Event | None = None) -> list[ChatResult]:
        return self.log.inside(self.info.name, requests[0].messages[0]["content"],
                               lambda: self.session.chat_many(requests, cancel))


class Watch:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.now: set[str] = set()
        self.first: set[tuple[str, str]] = set()
        self.together: set[str] = set()
        """System prompts (stages) in which both models had a wave in flight at once."""
        self.threads: dict[str, set[str]] = {}

    def inside(self, model: str, stage: str,
               call: Callable[[], list[ChatResult]]) -> list[ChatResult]:
        with self.lock:
            self.now.add(model)
            self.threads.setdefault(model, set()).add(threading.current_thread().name)
            self.lock.notify_all()
            if (model, stage) not in self.first:
                self.first.add((model, stage))
                self.lock.wait_for(lambda: len(self.now) == 2, timeout=MEET_S)
            if len(self.now) == 2:
                self.together.add(stage)
        try:
            return call()
        finally:
            with self.lock:
                self.now.discard(model)


class WatchedBackend:
    def __init__(self, inner: RoutingBackend, watch: Watch) -> None:
        self.inner, self.watch = inner, watch

    def load(self, spec: ModelSpec) -> Watched:
        return Watched(self.inner.load(spec), self.watch)


def test_a_local_and_an_endpoint_model_decode_at_the_same_time(tmp_path: Path, tiny_gguf: Path) -> None:
    server = LlamaServer(tiny_gguf, tmp_path / "server.log").start()
    try:
        registry = Registry(models=[
            ModelSpec(name="local", path=str(tiny_gguf), n_ctx=2048, n_threads=1),
            ModelSpec(name="remote", endpoint=server.url, max_in_flight=4)])
        options = RunOptions(samples=2, max_attempts=4, panel=1, seed_pool=3, dedup_threshold=None)
        out = tmp_path / "out"
        req = prepare_run(EXAMPLE_SEEDS, out, options, registry, "test")
        watch = Watch()
        backend = WatchedBackend(RoutingBackend(LlamaProcessBackend(log_dir=out / "logs")), watch)
        started = time.monotonic()
        result = Run(req, backend).execute()
    finally:
        server.stop()
    assert result.status in ("complete", "exhausted"), result.status
    assert time.monotonic() - started < 60
    # Both decoded at once in several stages: the local model on the calling thread, the
    # endpoint model in its group's thread.
    assert len(watch.together) >= 2, watch.together
    assert watch.threads["local"] == {"MainThread"}
    assert "gra-group-remote" in watch.threads["remote"]
    stats = result.run_json.stats.models
    assert stats["local"].calls > 0 and stats["remote"].calls > 0
    assert result.run_json.loads == {"local": 1, "remote": 1}
    assert not [t for t in threading.enumerate() if t.name.startswith("gra-group-")]
