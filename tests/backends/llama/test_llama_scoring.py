"""Teacher-forced scoring (backends/llama/scoring.py) in-process, and `score_many` through a
worker process.

The reference is plain llama-cpp-python: `Llama(logits_all=True)`, `eval` of the prompt and
the response alone in a fresh context, log-softmax of `scores`. The tiny GGUFs' logits
depend only on the last token (tests/ggufs.py), so only the embedded SmolLM2 proves that
positions and sequence ids are right; on the CPU the scorer's rules make its log-probs equal
the reference's bit for bit (scoring.py "Exact log-probs"), checked here to 1e-3."""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ggufs import EOS_ID, IM_END_ID, TOKEN_ID, write_tiny_gguf

from gra_local.backends.llama.decode import Decoder
from gra_local.backends.llama.process import LlamaProcessSession
from gra_local.backends.llama.prompt import chat_prompt, load_llama
from gra_local.backends.llama.scoring import EXACT_STEP, PairScorer, Scored, piece, response_tokens
from gra_local.core.backend import ChatRequest, Scorer, ScoreRequest
from gra_local.core.errors import WorkerLost

llama_cpp = pytest.importorskip("llama_cpp")

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly."}
PAIRS = [("What is the capital of France?", "The capital of France is Paris."),
         ("Name three primary colors.", "Red, yellow and blue are the three primary colors."),
         ("Write a haiku about rain.", "Soft rain on the roof,\nthe garden drinks in silence,\nclouds drift out to sea."),
         ("What is 2 + 2?", "4"),
         ("Translate 'good morning' into French.", "Bonjour.")]


def request(user: str, response: str, system: dict | None = SYSTEM) -> dict:
    head = [system] if system else []
    return {"messages": [*head, {"role": "user", "content": user}],
            "baseline": [*head, {"role": "user", "content": ""}], "response": response}


@pytest.fixture
def scorers() -> Iterator[Callable[..., PairScorer]]:
    made: list[PairScorer] = []

    def make(path: Path, n_parallel: int = 2, n_ctx: int = 2048, kv_cells: int | None = None,
             exact: bool = True) -> PairScorer:
        llm = load_llama(str(path), kv_cells=kv_cells or n_ctx, n_parallel=n_parallel, n_gpu_layers=0,
                         n_threads=1, chat_format=None, seed=0, verbose=False)
        made.append(PairScorer(Decoder(llm, n_parallel, n_ctx), exact=exact))
        return made[-1]

    yield make
    for s in made:
        s.decoder.close()
        s.llm.close()


@pytest.fixture(scope="module")
def references() -> Iterator[Callable[[Path], Any]]:
    loaded: dict[Path, Any] = {}

    def get(path: Path) -> Any:
        if path not in loaded:  # flash attention, as the worker (prompt.FLASH_ATTN)
            loaded[path] = llama_cpp.Llama(str(path), logits_all=True, n_ctx=2048, n_batch=EXACT_STEP,
                                           n_threads=1, flash_attn=True, verbose=False)
        return loaded[path]

    yield get
    for llm in loaded.values():
        llm.close()


def reference(llm: Any, prompt: list[int], response: list[int], end: int | None) -> tuple[list[float], float | None]:
    """log p of each response token (and of `end` after them) from one sequence evaluated
    alone from position 0, in batches under 64 tokens, never a lone last one."""
    tokens = prompt + response
    llm.reset()
    i = 0
    while i < len(tokens):
        n = min(EXACT_STEP, len(tokens) - i)
        n -= 1 if len(tokens) - i - n == 1 else 0
        llm.eval(tokens[i:i + n])
        i += n
    rows = np.array(llm.scores[len(prompt) - 1:len(tokens)], dtype=np.float64)
    top = rows.max(axis=1)
    logp = rows - (top + np.log(np.exp(rows - top[:, None]).sum(axis=1)))[:, None]
    return [float(logp[k, t]) for k, t in enumerate(response)], None if end is None else float(logp[-1, end])


def check_against_reference(scorer: PairScorer, ref: Any, req: dict, got: Scored) -> None:
    response = response_tokens(scorer.llm, req["response"])
    for side, messages in ((0, req["messages"]), (1, req["baseline"])):
        prompt = chat_prompt(scorer.llm, messages)[0]
        want, end = reference(ref, prompt, response, scorer.eot if side == 0 else None)
        values = got.logprobs if side == 0 else got.baseline_logprobs
        assert len(values) == len(response)
        np.testing.assert_allclose(values, want, atol=1e-3, rtol=0)
        if side == 0:
            assert got.prompt_tokens == len(prompt) and got.response_tokens == len(response)
            assert got.end_logprob is not None and end is not None
            assert abs(got.end_logprob - end) < 1e-3


def test_tiny_gguf_matches_the_reference(tiny_gguf: Path, scorers: Callable[..., PairScorer],
                                         references: Callable[[Path], Any]) -> None:
    scorer = scorers(tiny_gguf)
    assert scorer.eot == IM_END_ID  # what its ChatML template closes a turn with, not </s>
    reqs = [request(q, a) for q, a in PAIRS]
    results = scorer.run(reqs)
    assert [r.finish_reason for r in results] == ["ok"] * len(PAIRS)
    for req, got in zip(reqs, results, strict=True):
        check_against_reference(scorer, references(tiny_gguf), req, got)


def test_embedded_model_matches_the_reference(smol_model: Path, scorers: Callable[..., PairScorer],
                                              references: Callable[[Path], Any]) -> None:
    scorer = scorers(smol_model)
    eot = scorer.eot
    assert eot is not None and piece(scorer.llm._model.vocab, eot, True) == b"<|im_end|>"
    assert llama_cpp.llama_vocab_eot(scorer.llm._model.vocab) != eot  # llama.cpp guesses <|endoftext|>
    reqs = [request(q, a) for q, a in PAIRS] + [request("Say hi.", "Hi!", system=None)]
    results = scorer.run(reqs)  # 2 pairs at once: 3 waves, one without a system prompt
    for req, got in zip(reqs, results, strict=True):
        assert got.finish_reason == "ok" and not got.truncated
        check_against_reference(scorer, references(smol_model), req, got)


def test_a_batch_of_pairs_equals_each_pair_alone_and_chunks_change_nothing(
        smol_model: Path, scorers: Callable[..., PairScorer]) -> None:
    scorer = scorers(smol_model, n_parallel=3)
    reqs = [request(q, a) for q, a in PAIRS]
    together = scorer.run(reqs)
    for req, got in zip(reqs, together, strict=True):
        alone = scorer.run([req])[0]
        assert (alone.logprobs, alone.baseline_logprobs, alone.end_logprob) == \
            (got.logprobs, got.baseline_logprobs, got.end_logprob)
    scorer.max_step = 5  # every sequence in many chunks, the shared prefix too
    chunked = scorer.run(reqs)
    for a, b in zip(together, chunked, strict=True):
        np.testing.assert_allclose(a.logprobs + a.baseline_logprobs, b.logprobs + b.baseline_logprobs,
                                   atol=1e-6, rtol=0)
        assert a.end_logprob is not None and b.end_logprob is not None
        assert abs(a.end_logprob - b.end_logprob) < 1e-6
    short = request("Hi?", "Hello.", system={"role": "system", "content": "Be brief."})
    scorer.max_step = 512  # the whole pair in one step: under 64 tokens, the same kernel
    decodes = Decodes(scorer)
    whole = scorer.run([short])[0]
    assert len(decodes.calls) == 1 and len(decodes.calls[0]) < 64
    scorer.max_step = 3
    parts = scorer.run([short])[0]
    assert (parts.logprobs, parts.baseline_logprobs, parts.end_logprob) == \
        (whole.logprobs, whole.baseline_logprobs, whole.end_logprob)


class Decodes:
    """Every llama_decode of a scorer: the seq ids of each token, and which ask for logits."""

    def __init__(self, scorer: PairScorer) -> None:
        self.calls: list[list[tuple[tuple[int, ...], bool]]] = []
        decoder, real = scorer.decoder, scorer.decoder.decode_batch

        def counted(cancelled: Callable[[], bool]) -> int:
            b = decoder.batch
            self.calls.append([(tuple(b.seq_id[j][s] for s in range(b.n_seq_id[j])), bool(b.logits[j]))
                               for j in range(b.n_tokens)])
            return real(cancelled)

        decoder.decode_batch = counted  # type: ignore[method-assign]

    def rows(self, call: int, seq: int) -> int:
        return sum(1 for seqs, logits in self.calls[call] if logits and seqs == (seq,))


def test_both_sequences_of_a_pair_share_every_decode(smol_model: Path, scorers: Callable[..., PairScorer]) -> None:
    scorer = scorers(smol_model, n_parallel=1)
    cond, base = scorer.base, scorer.base + 1
    req = request("Hi?", "Hello there.", system={"role": "system", "content": "Be brief."})
    n = len(response_tokens(scorer.llm, req["response"]))
    scorer.max_step = 512
    decodes = Decodes(scorer)
    scorer.run([req])
    (call,) = decodes.calls  # the whole pair in one llama_decode
    assert decodes.rows(0, cond) == n + 1 and decodes.rows(0, base) == n  # + the end-of-turn row
    shared = [seqs for seqs, _ in call if len(seqs) == 2]
    assert shared and set(shared) == {(cond, base)}  # the system turn, decoded once for both
    assert not any(logits for seqs, logits in call if len(seqs) == 2)
    # in chunks: every step full, the two sequences' tokens packed into the same decodes
    decodes.calls.clear()
    scorer.max_step = 8
    scorer.run([req])
    assert len(decodes.calls) == math.ceil(len(call) / 8)
    assert sum(len(c) for c in decodes.calls) == len(call)
    assert any(decodes.rows(i, cond) and decodes.rows(i, base) for i in range(len(decodes.calls)))


def test_empty_truncated_and_cancelled(smol_model: Path, scorers: Callable[..., PairScorer],
                                       references: Callable[[Path], Any]) -> None:
    scorer = scorers(smol_model, n_ctx=256)
    long = " ".join(f"word{i}" for i in range(300))
    reqs = [request("Say nothing.", ""), request("Repeat the words.", long), request(*PAIRS[0])]
    empty, cut, fine = scorer.run(reqs)
    assert (empty.finish_reason, empty.logprobs, empty.response_tokens) == ("empty", [], 0)
    assert cut.finish_reason == "ok" and cut.truncated and cut.end_logprob is None
    assert cut.response_tokens == len(response_tokens(scorer.llm, long)) > 256
    assert len(cut.logprobs) == len(cut.baseline_logprobs) == 256 - cut.prompt_tokens  # what fits
    prompt = chat_prompt(scorer.llm, reqs[1]["messages"])[0]
    want, _ = reference(references(smol_model), prompt, response_tokens(scorer.llm, long)[:len(cut.logprobs)], None)
    np.testing.assert_allclose(cut.logprobs, want, atol=1e-3, rtol=0)
    assert fine.finish_reason == "ok" and not fine.truncated
    steps = [0]

    def after_two_steps() -> bool:
        steps[0] += 1
        return steps[0] > 2

    scorer.max_step = 8
    done: list[int] = []
    results = scorer.run([request(q, a) for q, a in PAIRS], after_two_steps, lambda i, r: done.append(i))
    assert [r.finish_reason for r in results] == ["cancelled"] * len(PAIRS)
    assert sorted(done) == list(range(len(PAIRS))) and all(not r.logprobs for r in results)
    assert scorer.run([request(*PAIRS[0])])[0].logprobs == fine.logprobs  # and it carries on


def test_a_pair_too_large_for_the_cache_together_decodes_one_side_at_a_time(
        smol_model: Path, scorers: Callable[..., PairScorer], references: Callable[[Path], Any]) -> None:
    scorer = scorers(smol_model, n_parallel=1, n_ctx=256, kv_cells=256)
    req = request("Repeat the words.", " ".join(f"w{i}" for i in range(60)))
    decodes = Decodes(scorer)
    (got,) = scorer.run([req])
    seqs = [{s for seqs, _ in call for s in seqs} for call in decodes.calls]
    assert {scorer.base, scorer.base + 1} not in seqs  # never both at once
    assert got.finish_reason == "ok" and not got.truncated
    check_against_reference(scorer, references(smol_model), req, got)


def test_the_model_reads_pmi_and_a_cut_answer(smol_model: Path, scorers: Callable[..., PairScorer]) -> None:
    scorer = scorers(smol_model)
    full, cut = scorer.run([request(*PAIRS[0]), request(PAIRS[0][0], "The capital of France is")])
    assert np.mean(full.logprobs) > np.mean(full.baseline_logprobs)  # PMI > 0
    assert full.end_logprob is not None and cut.end_logprob is not None
    assert full.end_logprob > -2.0 and cut.end_logprob < full.end_logprob - 5.0


def test_responses_are_tokenized_as_written_and_turn_ends_found(tmp_path: Path,
                                                                scorers: Callable[..., PairScorer]) -> None:
    spm = write_tiny_gguf(tmp_path / "spm.gguf", extra_kv={"tokenizer.ggml.add_space_prefix": True})
    scorer = scorers(spm, n_parallel=1)
    assert scorer.llm.tokenize(b"ok", add_bos=False, special=False)[0] == TOKEN_ID["\u2581"]  # the pitfall
    assert response_tokens(scorer.llm, "ok") == [TOKEN_ID["o"], TOKEN_ID["k"]]
    assert response_tokens(scorer.llm, " ok")[0] == TOKEN_ID["\u2581"]  # a space written stays
    assert response_tokens(scorer.llm, "<|im_end|>") != [IM_END_ID]  # text, not a control token
    plain = write_tiny_gguf(tmp_path / "plain.gguf", chat_template=(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"))
    assert scorers(plain, n_parallel=1).eot == EOS_ID  # no end-of-turn token: the format's stop


Worker = Callable[..., LlamaProcessSession]


def test_score_many_through_a_worker(tiny_worker: Worker) -> None:
    session = tiny_worker(n_ctx=1024, n_parallel=2)
    assert isinstance(session, Scorer)
    assert session.score_many([]) == []
    reqs = [ScoreRequest(**request(q, a)) for q, a in PAIRS] + [ScoreRequest(**request("x", ""))]
    results = session.score_many(reqs)
    assert [r.finish_reason for r in results] == ["ok"] * len(PAIRS) + ["empty"]
    assert all(len(r.logprobs) == len(r.baseline_logprobs) == r.response_tokens for r in results)
    assert results[3].response_tokens == 1 and results[3].end_logprob is not None
    after = session.chat(ChatRequest(messages=[SYSTEM, {"role": "user", "content": "hi"}], temperature=0.8,
                                     top_p=0.95, max_tokens=8, seed=1))
    assert after.completion_tokens > 0  # the decoder's book is right again
    cancel = threading.Event()
    cancel.set()
    big = [ScoreRequest(**request(f"q{i}", "word " * 300)) for i in range(60)]
    stopped = session.score_many(big, cancel)
    assert "cancelled" in {r.finish_reason for r in stopped} <= {"ok", "cancelled"}
    os.kill(session._proc.pid, signal.SIGKILL)
    session._proc.wait()
    with pytest.raises(WorkerLost, match="worker process died while running"):
        session.score_many(reqs[:1])
