"""The llama.cpp worker-process backend on a real tiny GGUF: load, chat, chat_many,
cancel, prefix reuse, the load retry ladder. (A worker that dies, stalls or misses its
deadline: test_llama_process_faults.py; both start workers with conftest's `tiny_worker`.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gra_local.backends.llama import process as llama_process
from gra_local.backends.llama.process import LlamaProcessBackend, LlamaProcessSession
from gra_local.core.backend import ChatRequest
from gra_local.core.config import ModelSpec
from gra_local.core.errors import BackendError, ModelError
from gra_local.core.grammars import GRAMMARS, token_budget
from gra_local.core.records import InstructionVerdict

Worker = Callable[..., LlamaProcessSession]
"""conftest's `tiny_worker`: starts a worker on a GGUF (the tiny one unless named), closed
after the test."""


def request(user: str, grammar: str | None = None, max_tokens: int = 48) -> ChatRequest:
    messages = [{"role": "system", "content": "You are a careful reviewer. " * 20},
                {"role": "user", "content": user}]
    return ChatRequest(messages=messages, temperature=0.8, top_p=0.95, max_tokens=max_tokens,
                       seed=1, grammar=grammar)


def test_chat_in_a_worker_reuses_the_prompt_prefix(tmp_path: Path, tiny_worker: Worker) -> None:
    session = tiny_worker(log_dir=tmp_path / "logs", n_ctx=1024)
    assert session.info.n_gpu_layers == 0 and "CPU" in session.info.details["gpu_plan"]
    first = session.chat(request("first question"))
    second = session.chat(request("second question"))
    assert first.finish_reason in ("stop", "length") and first.completion_tokens > 0
    assert second.prompt_evaluated is not None
    assert second.prompt_evaluated < second.prompt_tokens / 2  # the system prompt was cached
    judged = session.chat(request("judge", GRAMMARS[InstructionVerdict],
                                  token_budget(InstructionVerdict)))
    assert judged.text.startswith('{"reasonable": "')
    session.close()
    assert (tmp_path / "logs" / "tiny.log").stat().st_size > 0  # llama.cpp's chatter went here


def test_load_retries_with_fewer_gpu_layers_then_cpu(tiny_worker: Worker,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[int] = []
    real = llama_process.LlamaProcessSession

    def flaky(spec: ModelSpec, *args: object):
        tried.append(int(spec.n_gpu_layers))
        if spec.n_gpu_layers:
            raise ModelError("out of memory (simulated)")
        return real(spec, *args)

    monkeypatch.setattr(llama_process, "gpu_layers_for", lambda spec, info, *args, **kw: (20, "plan: GPU"))
    monkeypatch.setattr(llama_process, "LlamaProcessSession", flaky)
    session = tiny_worker()
    assert tried == [20, 10, 0]
    assert "with 0 GPU layers instead" in session.info.details["gpu_plan"]
    assert "out of memory (simulated)" in session.info.details["gpu_plan"]


def test_unknown_architecture_is_refused_before_loading(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from ggufs import write_tiny_gguf

    from gra_local.models import resolve

    foo = write_tiny_gguf(tmp_path / "foo.gguf", architecture="foo")
    spec = ModelSpec(name="foo", path=str(foo))
    with pytest.raises(ModelError, match="architecture llama.cpp does not know"):
        LlamaProcessBackend(log_dir=tmp_path / "logs").load(spec)
    assert not (tmp_path / "logs" / "foo.log").exists()  # refused before any worker started
    # Without the check, llama.cpp's own error line is what the user reads, not a traceback.
    monkeypatch.setattr(resolve, "known_architectures", lambda: set())
    with pytest.raises(ModelError, match="unknown model architecture: 'foo'") as err:
        LlamaProcessBackend(log_dir=tmp_path / "logs").load(spec)
    assert "Traceback" not in str(err.value)


def test_context_above_training_is_refused_not_shrunk(tiny_worker: Worker) -> None:
    with pytest.raises(ModelError, match="n_ctx 4096 is above its trained context 2048"):
        tiny_worker(n_ctx=4096)  # trained: 2048
    assert tiny_worker().info.n_ctx == 2048  # default: min(4096, trained)


def test_partial_text_reaches_a_listener_while_generating(tmp_path: Path, tiny_worker: Worker) -> None:
    from ggufs import write_tiny_gguf

    endless = write_tiny_gguf(tmp_path / "endless.gguf", eos_bias=-20.0)  # never stops by itself
    session = tiny_worker(endless, name="e")
    seen: list[str] = []
    session.on_partial = seen.append
    # ~594 prompt tokens + 1440: the most that fits n_ctx 2048 (more is "too_long")
    req = request("go on").model_copy(update={"max_tokens": 1440, "stream_partials": True})
    result = session.chat(req)
    streamed = len(seen)
    session.chat(request("again").model_copy(update={"max_tokens": 1400}))
    assert result.finish_reason == "length" and streamed, "no partial text arrived"
    assert all(len(text) <= 600 for text in seen)
    assert seen[-1][-20:] in result.text  # the live text is the reply as it grows
    assert len(seen) == streamed  # a request that does not ask gets no partials


def test_chat_many_in_order_and_the_same_on_fresh_workers(tiny_worker: Worker) -> None:
    requests = [request(f"question {i}", GRAMMARS[InstructionVerdict] if i % 2 else None,
                        token_budget(InstructionVerdict)).model_copy(update={"seed": i})
                for i in range(7)]
    texts = []
    for _ in range(2):
        session = tiny_worker(n_ctx=1024, n_parallel=3)
        assert session.info.n_parallel == 3 and session.info.details["kv_cells"] >= 1024
        results = session.chat_many(requests)
        alone = session.chat(requests[3])
        session.close()  # the next one starts fresh, alone
        assert len(results) == 7 and all(r.finish_reason in ("stop", "length") for r in results)
        assert all(r.text.startswith('{"reasonable": "') for r in results[1::2])
        assert results[0].prompt_evaluated == results[0].prompt_tokens
        assert all(r.prompt_evaluated is not None and r.prompt_evaluated < r.prompt_tokens / 2
                   for r in results[1:])  # the system prompt was decoded once
        assert alone.text.startswith('{"reasonable": "')
        texts.append([r.text for r in results])
    assert texts[0] == texts[1]


def test_each_result_is_reported_as_it_finishes(tiny_worker: Worker) -> None:
    """`on_result` hears of every request of a call, with its completion tokens, before the
    call returns (the stage bar moves within a wave); a short request is heard of before a
    long one that started with it."""
    session = tiny_worker(n_ctx=1024, n_parallel=2)
    heard: list[tuple[int, int, float]] = []
    session.on_result = lambda index, tokens: heard.append((index, tokens, time.monotonic()))
    requests = [request("a long one", max_tokens=60), request("a short one", max_tokens=4),
                request("another", max_tokens=8)]
    results = session.chat_many([r.model_copy(update={"seed": 3}) for r in requests])
    returned = time.monotonic()
    assert sorted(i for i, _, _ in heard) == [0, 1, 2] and all(t <= returned for _, _, t in heard)
    assert {i: n for i, n, _ in heard} == {i: r.completion_tokens for i, r in enumerate(results)}
    if results[0].completion_tokens > results[1].completion_tokens:
        assert [i for i, _, _ in heard].index(1) < [i for i, _, _ in heard].index(0)


def test_cancel_ends_the_call_soon_with_the_unfinished_marked(tmp_path: Path, tiny_worker: Worker) -> None:
    from ggufs import write_tiny_gguf

    endless = write_tiny_gguf(tmp_path / "endless.gguf", eos_bias=-20.0)
    session = tiny_worker(endless, name="e", n_ctx=2048, n_parallel=2)
    cancel = threading.Event()
    set_at: list[float] = []

    def first_text(text: str) -> None:  # the watched request has started: cancel now
        if not cancel.is_set():
            set_at.append(time.monotonic())
            cancel.set()

    session.on_partial = first_text
    requests = [request("short", max_tokens=1)] + [  # done at the step the watched one starts
        request(f"long {i}", max_tokens=1440).model_copy(update={"stream_partials": i == 0})
        for i in range(4)]
    results = session.chat_many(requests, cancel)
    took = time.monotonic() - set_at[0]
    after = session.chat(request("still there?", max_tokens=4))  # the worker carries on
    assert took < 1.0, took
    assert results[0].finish_reason == "length" and results[0].completion_tokens == 1
    assert [r.finish_reason for r in results[1:]] == ["cancelled"] * 4
    assert results[1].completion_tokens < 1000 and results[4].completion_tokens == 0
    assert after.completion_tokens == 4 and after.finish_reason == "length"


def test_a_bad_grammar_fails_the_call_clearly_and_the_worker_carries_on(tiny_worker: Worker) -> None:
    session = tiny_worker()
    with pytest.raises(BackendError, match="model 'tiny': GrammarError: llama.cpp could not parse "
                                           "the GBNF grammar starting 'root ::= \\[0-9'"):
        session.chat_many([request("fine"), request("bad", grammar="root ::= [0-9")])
    assert session.chat_many([request("fine")])[0].completion_tokens > 0
