"""The worker's request handling in-process on a tiny GGUF (the protocol lines go to a
buffer): a request too long for the context is answered alone, the rest decode."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from gra_local.backends.llama.worker import Worker
from gra_local.core.grammars import GRAMMARS, token_budget
from gra_local.core.records import InstructionVerdict

pytest.importorskip("llama_cpp")

N_CTX = 512


@pytest.fixture
def worker(tiny_gguf: Path) -> Iterator[Worker]:
    w = Worker(io.BytesIO())
    reply = w.load({"path": str(tiny_gguf), "n_ctx": N_CTX, "n_parallel": 2, "kv_cells": 1024,
                    "n_gpu_layers": 0, "n_threads": 1, "chat_format": None, "seed": 0})
    assert reply["ok"] and reply["n_ctx"] == N_CTX
    yield w
    w.decoder.close()
    w.llm.close()


def request(user: str, max_tokens: int = 48, grammar: str | None = None) -> dict:
    return {"messages": [{"role": "system", "content": "You judge."}, {"role": "user", "content": user}],
            "temperature": 0.8, "top_p": 0.95, "max_tokens": max_tokens, "seed": 1,
            "grammar": grammar}


def lines(w: Worker) -> list[dict]:
    assert isinstance(w.channel, io.BytesIO)
    return [orjson.loads(x) for x in w.channel.getvalue().splitlines()]


def test_one_too_long_request_among_normal_ones_in_one_chat_many(worker: Worker) -> None:
    verdict = {"grammar": GRAMMARS[InstructionVerdict], "max_tokens": token_budget(InstructionVerdict)}
    requests = [request("short question"),
                request("word " * 200),  # the tiny tokenizer spells it out: > N_CTX tokens
                request("fits, but not with its budget", max_tokens=N_CTX - 40),
                request("judge this", **verdict)]
    assert worker.chat_many({"requests": requests}) == {"ok": True, "done": True}
    results = {line["index"]: line for line in lines(worker) if "index" in line and "partial" not in line}
    assert sorted(results) == [0, 1, 2, 3]  # one answer each, every request
    for i in (1, 2):
        r = results[i]
        assert (r["finish_reason"], r["text"], r["completion_tokens"]) == ("too_long", "", 0)
        assert r["prompt_evaluated"] == 0
    assert results[1]["prompt_tokens"] > N_CTX  # its real length, tokenized
    assert results[2]["prompt_tokens"] < N_CTX < results[2]["prompt_tokens"] + N_CTX - 40
    for i in (0, 3):
        assert results[i]["finish_reason"] in ("stop", "length") and results[i]["completion_tokens"] > 0
    assert results[3]["text"].startswith('{"reasonable": "')
    assert list(results)[:2] == [1, 2]  # answered before anything was decoded


def test_a_lone_too_long_request_is_an_answer_not_an_error(worker: Worker) -> None:
    assert worker.chat_many({"requests": [request("word " * 200)]}) == {"ok": True, "done": True}
    (reply,) = [line for line in lines(worker) if "index" in line and "partial" not in line]
    assert reply["finish_reason"] == "too_long"
    assert isinstance(worker.channel, io.BytesIO)
    worker.channel.seek(0)
    worker.channel.truncate()
    assert worker.chat_many({"requests": [request("and now a short one")]}) == {"ok": True, "done": True}
    (again,) = [line for line in lines(worker) if "index" in line and "partial" not in line]
    assert again["completion_tokens"] > 0  # the worker goes on
