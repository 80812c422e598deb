"""The batched worker on the real embedded SmolLM2-135M: our grammars give valid output,
the same requests on fresh workers give the same texts, and a cancel returns within 1 s."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gra_local.backends.llama.process import LlamaProcessBackend, LlamaProcessSession
from gra_local.core.backend import ChatRequest
from gra_local.core.config import ModelSpec
from gra_local.core.grammars import GRAMMARS, parse_json, token_budget
from gra_local.core.records import InstructionVerdict, Scores

pytestmark = pytest.mark.e2e

SYSTEM = ("You are a strict reviewer. Read the instruction and the response, then answer "
          "with JSON only.")
QUESTIONS = ["What is 2+2?", "Name five primes.", "What is the capital of France?",
             "Explain recursion briefly.", "Write a haiku about rain.", "Who wrote Hamlet?"]


def load(smol_model: Path, tmp_path: Path, n_parallel: int = 4) -> LlamaProcessSession:
    # Threads pinned: left to the governor, they follow the machine's load at each load, and
    # two workers with other thread counts sum floats in another order (other texts).
    spec = ModelSpec(name="smol", path=str(smol_model), n_ctx=2048, n_parallel=n_parallel,
                     n_threads=2)
    return LlamaProcessBackend(log_dir=tmp_path).load(spec)


def requests() -> list[ChatRequest]:
    out = []
    for i, question in enumerate(QUESTIONS):
        out_type = (Scores, InstructionVerdict)[i % 2]
        user = f"Instruction: {question}\nResponse: I think the answer is simple.\nJudge it."
        out.append(ChatRequest(messages=[{"role": "system", "content": SYSTEM},
                                         {"role": "user", "content": user}],
                               temperature=0.2, top_p=0.9, max_tokens=token_budget(out_type),
                               seed=i, grammar=GRAMMARS[out_type]))
    return out


def test_grammar_output_is_valid_and_the_same_on_fresh_workers(smol_model: Path, tmp_path: Path) -> None:
    texts = []
    for _ in range(2):
        session = load(smol_model, tmp_path)
        try:
            results = session.chat_many(requests())
        finally:
            session.close()
        for i, r in enumerate(results):
            parse_json(r.text, (Scores, InstructionVerdict)[i % 2], r.finish_reason)
        texts.append([r.text for r in results])
    assert texts[0] == texts[1]


def test_cancel_returns_within_a_second(smol_model: Path, tmp_path: Path) -> None:
    session = load(smol_model, tmp_path)
    cancel = threading.Event()
    set_at: list[float] = []

    def on_text(text: str) -> None:  # cancel mid-generation, once some text has come
        if len(text) > 10 and not cancel.is_set():
            set_at.append(time.monotonic())
            cancel.set()

    session.on_partial = on_text
    free = [r.model_copy(update={"grammar": None, "max_tokens": 1500, "temperature": 0.9,
                                 "stream_partials": True}) for r in requests()]
    try:
        results = session.chat_many(free, cancel)
        took = time.monotonic() - set_at[0]
    finally:
        session.close()
    assert "cancelled" in {r.finish_reason for r in results}
    assert took < 1.0, took


def test_cancel_stops_a_long_prompt_midway(smol_model: Path, tmp_path: Path) -> None:
    """A step carrying 512 prompt tokens takes seconds on one CPU thread: the cancel
    interrupts it (llama.cpp's abort callback), not waits for it."""
    session = load(smol_model, tmp_path)
    cancel = threading.Event()
    set_at: list[float] = []
    long_text = " ".join(f"item{i}" for i in range(400))
    reqs = [r.model_copy(update={"messages": [*r.messages[:-1], {"role": "user", "content": f"{i} {long_text}"}]})
            for i, r in enumerate(requests())]

    def stop() -> None:
        set_at.append(time.monotonic())
        cancel.set()

    timer = threading.Timer(0.3, stop)
    try:
        timer.start()
        results = session.chat_many(reqs, cancel)
        took = time.monotonic() - set_at[0]
    finally:
        timer.cancel()
        session.close()
    assert "cancelled" in {r.finish_reason for r in results}
    assert took < 1.0, took


def test_the_shortlist_chooses_what_the_whole_vocabulary_pass_would(
        smol_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused token is replaced from the most likely ones only when a whole-vocabulary
    pass would choose among the same tokens: the texts equal those of whole passes."""
    from gra_local.backends.llama import sampling
    from gra_local.backends.llama.decode import Decoder, Job
    from gra_local.backends.llama.prompt import chat_prompt, load_llama

    def texts() -> tuple[list[str], int, int]:
        llm = load_llama(str(smol_model), kv_cells=4096, n_parallel=4, n_gpu_layers=0,
                         n_threads=1, chat_format=None, seed=0, verbose=False)
        decoder = Decoder(llm, 4, 2048)
        try:
            jobs = []
            for r in requests():
                tokens, stop = chat_prompt(llm, r.messages)
                jobs.append(Job(tokens=tokens, stop=stop, max_tokens=r.max_tokens,
                                temperature=r.temperature, top_p=r.top_p, seed=r.seed,
                                grammar=r.grammar))
            out = [o.text for o in decoder.run(jobs)]
            return out, decoder.picker.rejected, decoder.picker.shortlisted
        finally:
            decoder.close()
            llm.close()

    with_shortlist, rejected, shortlisted = texts()
    monkeypatch.setattr(sampling, "SHORTLIST", 10**9)  # every refusal takes the whole pass
    whole, _, none = texts()
    assert with_shortlist == whole
    assert rejected > 0 and shortlisted > 0 and none == 0, (rejected, shortlisted)
