"""The batched decoder in-process on tiny random-weight GGUFs (tests/ggufs.py).

With random weights almost every token the sampler chain picks is refused by a grammar,
so these runs exercise the lazy grammar's fallback (full-vocabulary mask) on most tokens.
The tiny model's logits depend only on the last token, so its texts do not depend on how
sequences were batched: tests can compare runs with different batch shapes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from ggufs import write_tiny_gguf

# Before the imports below: each of them imports llama_cpp, so without llama-cpp-python
# the module is skipped here rather than failing to import.
llama_cpp = pytest.importorskip("llama_cpp")

from gra_local.backends.llama.decode import Decoder, Job, Outcome  # noqa: E402
from gra_local.backends.llama.prompt import chat_prompt, load_llama  # noqa: E402
from gra_local.backends.llama.sampling import GrammarError  # noqa: E402
from gra_local.core.grammars import GRAMMARS, parse_json, token_budget  # noqa: E402

SMALL = r'''root ::= "{\"a\": " digit ", \"b\": \"" [a-z ]{1,12} "\"}"
digit ::= [0-9]
'''
SMALL_RE = re.compile(r'\{"a": [0-9], "b": "[a-z ]{1,12}"\}')
SYSTEM = "You are a careful reviewer. " * 12


@pytest.fixture(scope="module")
def endless_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Never stops by itself: every free-text request runs to its budget."""
    return write_tiny_gguf(tmp_path_factory.mktemp("endless") / "endless.gguf", eos_bias=-20.0)


def make(path: Path, n_parallel: int = 4, n_ctx: int = 1024, kv_cells: int | None = None) -> Decoder:
    llm = load_llama(str(path), kv_cells=kv_cells or n_ctx, n_parallel=n_parallel, n_gpu_layers=0,
                     n_threads=1, chat_format=None, seed=0, verbose=False)
    return Decoder(llm, n_parallel, n_ctx)


@pytest.fixture
def decoders() -> Iterator[list[Decoder]]:
    made: list[Decoder] = []
    yield made
    for d in made:
        d.close()
        d.llm.close()


def job(d: Decoder, user: str, *, seed: int = 0, max_tokens: int = 64, grammar: str | None = None,
        system: str = SYSTEM, **kw: Any) -> Job:
    tokens, stop = chat_prompt(d.llm, [{"role": "system", "content": system},
                                       {"role": "user", "content": user}])
    return Job(tokens=tokens, stop=stop, max_tokens=max_tokens, temperature=0.8, top_p=0.95,
               seed=seed, grammar=grammar, **kw)


def test_prompt_and_stop_strings_are_llama_cpp_pythons(tiny_gguf: Path, decoders: list[Decoder]) -> None:
    d = make(tiny_gguf, n_parallel=1)
    decoders.append(d)
    messages = [{"role": "user", "content": "hi"}]
    tokens, stop = chat_prompt(d.llm, messages)
    assert d.llm.detokenize(tokens, special=True) == b"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert stop == ["</s>"]
    # what the ordinary call evaluates (the capture left the Llama as it was)
    evaluated: list[list[int]] = []
    real_eval = d.llm.eval
    d.llm.eval = lambda toks: (evaluated.append(list(toks)), real_eval(toks))[1]
    out = d.llm.create_chat_completion(messages=messages, max_tokens=4, seed=1)
    assert out["choices"][0]["message"]["content"] and evaluated[0] == tokens


def test_lazy_grammar_output_is_always_grammar_valid(tiny_gguf: Path, decoders: list[Decoder]) -> None:
    d = make(tiny_gguf)
    decoders.append(d)
    jobs = [job(d, f"question {i}", seed=i, max_tokens=64, grammar=SMALL) for i in range(12)]
    results = d.run(jobs)
    assert [r.finish_reason for r in results] == ["stop"] * 12
    assert all(SMALL_RE.fullmatch(r.text) for r in results), [r.text for r in results]
    assert d.picker.rejected > 0  # the fallback path (grammar over the whole vocabulary) ran
    assert len({r.text for r in results}) > 6  # seeds differ, so do the replies


@pytest.mark.parametrize("out_type", list(GRAMMARS), ids=lambda t: t.__name__)
def test_our_grammars_give_parseable_json(tiny_gguf: Path, decoders: list[Decoder], out_type: type) -> None:
    d = make(tiny_gguf, n_ctx=2048)
    decoders.append(d)
    jobs = [job(d, f"go {i}", seed=i, max_tokens=token_budget(out_type), grammar=GRAMMARS[out_type])
            for i in range(4)]
    for r in d.run(jobs):
        assert r.finish_reason == "stop", r
        orjson.loads(r.text)  # the grammar's JSON, whatever the random model wrote in it
        if out_type.__name__ in ("Scores", "InstructionVerdict"):
            parse_json(r.text, out_type, r.finish_reason)  # no free-text content rules to fail


def test_same_jobs_on_fresh_decoders_give_the_same_texts(tiny_gguf: Path, decoders: list[Decoder]) -> None:
    runs = []
    for _ in range(2):
        d = make(tiny_gguf, n_parallel=3)
        decoders.append(d)
        jobs = [job(d, f"q{i}", seed=i, grammar=SMALL if i % 2 else None) for i in range(7)]
        runs.append([r.text for r in d.run(jobs)])
    assert runs[0] == runs[1]


def test_a_finished_sequence_frees_its_slot_at_once(endless_gguf: Path, decoders: list[Decoder]) -> None:
    d = make(endless_gguf, n_parallel=2)
    decoders.append(d)
    budgets = [40, 5, 6, 7, 8, 9]
    order: list[int] = []
    results = d.run([job(d, f"q{i}", seed=i, max_tokens=b) for i, b in enumerate(budgets)],
                    on_done=lambda i, _: order.append(i))
    assert order == [1, 2, 3, 4, 5, 0]  # the short ones took turns in the second slot
    assert [r.completion_tokens for r in results] == budgets  # results in request order
    assert {r.finish_reason for r in results} == {"length"}


def test_a_budget_ends_one_sequence_alone(tiny_gguf: Path, decoders: list[Decoder]) -> None:
    d = make(tiny_gguf)
    decoders.append(d)
    jobs = [job(d, f"q{i}", seed=i, grammar=SMALL) for i in range(4)]
    jobs[1].max_tokens = 3
    results = d.run(jobs)
    assert (results[1].finish_reason, results[1].completion_tokens) == ("length", 3)
    for r in results[:1] + results[2:]:
        assert r.finish_reason == "stop" and SMALL_RE.fullmatch(r.text)


def test_a_budget_up_to_the_context_runs_and_one_beyond_it_is_too_long(endless_gguf: Path,
                                                                        decoders: list[Decoder]) -> None:
    d = make(endless_gguf, n_parallel=2, n_ctx=256)
    decoders.append(d)
    j = job(d, "go", max_tokens=10_000, system="short")
    fits = Job(**{**vars(j), "max_tokens": 256 - len(j.tokens)})
    over = Job(**{**vars(j), "max_tokens": 257 - len(j.tokens)})
    room = 256 - len(j.tokens)
    roomy = Job(**{**vars(j), "min_room": room})  # asks for less room than its budget
    cramped = Job(**{**vars(j), "min_room": room + 1})
    ran, beyond, too_long, cut, short = d.run([fits, over, j, roomy, cramped])
    for r in (ran, cut):  # runs to the end of the context
        assert r.finish_reason == "length" and r.prompt_tokens + r.completion_tokens == 256
    for r in (beyond, too_long, short):  # the prompt fits, the prompt and its room do not
        assert (r.finish_reason, r.text, r.completion_tokens, r.prompt_evaluated) == ("too_long", "", 0, 0)
        assert r.prompt_tokens == len(j.tokens)


def test_a_bad_grammar_is_one_clear_error(tiny_gguf: Path, decoders: list[Decoder]) -> None:
    d = make(tiny_gguf)
    decoders.append(d)
    jobs = [job(d, "fine", grammar=SMALL), job(d, "broken", grammar='root ::= "a" (')]
    with pytest.raises(GrammarError, match="could not parse the GBNF grammar starting 'root ::= \"a\" \\('"):
        d.run(jobs)
    assert not d.kv.used  # refused before anything was decoded
    (ok,) = d.run(jobs[:1])  # the decoder is still usable
    assert SMALL_RE.fullmatch(ok.text)


def test_a_prompt_longer_than_the_context_is_answered_alone(tiny_gguf: Path, decoders: list[Decoder]) -> None:
    d = make(tiny_gguf, n_ctx=256, kv_cells=1024)  # the limit is per sequence, not the whole cache
    decoders.append(d)
    jobs = [job(d, "short", system="s", grammar=SMALL), job(d, "long " * 60, system="s"),
            job(d, "also short", system="s", grammar=SMALL)]
    heard: list[tuple[int, str]] = []
    results = d.run(jobs, on_done=lambda i, o: heard.append((i, o.finish_reason)))
    assert [r.finish_reason for r in results] == ["stop", "too_long", "stop"]
    assert heard[0] == (1, "too_long")  # answered before anything was decoded
    assert (results[1].text, results[1].completion_tokens) == ("", 0)
    assert results[1].prompt_tokens == len(jobs[1].tokens) > 256
    assert SMALL_RE.fullmatch(results[0].text) and SMALL_RE.fullmatch(results[2].text)
    with pytest.raises(ValueError, match="request 0: its prompt is empty"):
        d.run([Job(**{**vars(jobs[0]), "tokens": []})])


def test_stop_strings_cut_the_text(tiny_gguf: Path, decoders: list[Decoder]) -> None:
    d = make(tiny_gguf)
    decoders.append(d)
    jobs = [job(d, f"q{i}", seed=i, max_tokens=200) for i in range(8)]
    free = d.run(jobs)
    cut = [Job(**{**vars(j), "stop": [*j.stop, "e"]}) for j in jobs]
    for before, after in zip(free, d.run(cut), strict=True):
        assert after.text == before.text.split("e")[0]
        assert after.finish_reason == ("stop" if "e" in before.text else before.finish_reason)


def test_the_common_prefix_is_decoded_once(tiny_gguf: Path, decoders: list[Decoder]) -> None:
    d = make(tiny_gguf)
    decoders.append(d)
    jobs = [job(d, f"question {i}", seed=i) for i in range(6)]
    first = d.run(jobs)
    prompt = first[0].prompt_tokens
    assert first[0].prompt_evaluated == prompt
    assert all(r.prompt_evaluated < prompt / 4 for r in first[1:])  # the system prompt was shared
    again = d.run(jobs)  # across calls, from any sequence's cache
    assert all(r.prompt_evaluated < prompt / 4 for r in again)
    assert d.kv.used <= d.n_cells


def test_tiny_kv_cache_still_finishes_everything(endless_gguf: Path, decoders: list[Decoder]) -> None:
    # 256 cells for 4 sequences; each request needs ~70 prompt + 60 budget cells beyond the
    # shared prefix, so only a few fit at once and the rest wait for free cells
    d = make(endless_gguf, n_parallel=4, n_ctx=256, kv_cells=256)
    decoders.append(d)
    jobs = [job(d, f"question number {i} " * (i + 1), seed=i, max_tokens=60, system="short")
            for i in range(8)]
    results = d.run(jobs)
    assert [r.completion_tokens for r in results] == [60] * 8  # every budget, no KV failure
    reference = make(endless_gguf, n_parallel=1, n_ctx=256)
    decoders.append(reference)
    assert [r.text for r in results] == [r.text for r in reference.run(jobs)]


def test_no_kv_slot_shrinks_the_step_then_ends_one_sequence(endless_gguf: Path, decoders: list[Decoder],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    d = make(endless_gguf, n_parallel=3)
    decoders.append(d)
    jobs = [job(d, f"q{i}", seed=i, max_tokens=30) for i in range(3)]
    expected = [r.text for r in make(endless_gguf, n_parallel=3).run(jobs)]
    real = llama_cpp.llama_decode
    steps: list[int] = []

    def picky(ctx: Any, batch: Any) -> int:
        """No slot for a batch of several sequences, nor for sequence 1 past position 60."""
        seqs = {batch.seq_id[j][0] for j in range(batch.n_tokens)}
        if len(seqs) > 1 or (1 in seqs and max(batch.pos[j] for j in range(batch.n_tokens)) >= 60):
            return 1
        steps.append(batch.n_tokens)
        return int(real(ctx, batch))

    monkeypatch.setattr(llama_cpp, "llama_decode", picky)
    results = d.run(jobs)
    assert results[1].finish_reason == "length" and results[1].completion_tokens < 30
    assert expected[1].startswith(results[1].text)
    assert [r.text for r in (results[0], results[2])] == [expected[0], expected[2]]
    assert [r.completion_tokens for r in (results[0], results[2])] == [30, 30]


def test_cancel_ends_the_unfinished_ones(endless_gguf: Path, decoders: list[Decoder]) -> None:
    d = make(endless_gguf, n_parallel=2)
    decoders.append(d)
    budgets = [5, 500, 500, 500]
    seen: dict[int, Outcome] = {}
    results = d.run([job(d, f"q{i}", seed=i, max_tokens=b) for i, b in enumerate(budgets)],
                    cancelled=lambda: 0 in seen and (r := d.running[1]) is not None and len(r.gen) > 20,
                    on_done=seen.__setitem__)
    assert results[0].finish_reason == "length" and results[0].completion_tokens == 5
    assert [r.finish_reason for r in results[1:]] == ["cancelled"] * 3
    assert results[1].completion_tokens > 20 and len(results[1].text) > 20  # its text so far
    assert results[3].completion_tokens == 0 and seen.keys() == {0, 1, 2, 3}


def test_partials_follow_the_watched_request(endless_gguf: Path, decoders: list[Decoder],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from gra_local.backends.llama import decode

    monkeypatch.setattr(decode, "PARTIAL_EVERY_S", 0.0)
    d = make(endless_gguf, n_parallel=2)
    decoders.append(d)
    jobs = [job(d, "a", max_tokens=50), job(d, "b", seed=1, max_tokens=40, stream_partials=True)]
    seen: list[tuple[int, str]] = []
    results = d.run(jobs, on_partial=lambda i, text: seen.append((i, text)))
    assert seen and {i for i, _ in seen} == {1}
    assert all(results[1].text.startswith(text) for _, text in seen)


def test_a_cancel_stops_a_prompt_step_midway(tiny_gguf: Path, decoders: list[Decoder]) -> None:
    d = make(tiny_gguf, n_parallel=2)
    decoders.append(d)
    jobs = [job(d, f"q{i}", seed=i) for i in range(3)]
    calls: list[int] = []

    def cancelled() -> bool:  # the 1st call is the loop's; the 2nd comes from inside llama_decode
        calls.append(1)
        return len(calls) >= 2

    results = d.run(jobs, cancelled=cancelled)
    assert [r.finish_reason for r in results] == ["cancelled"] * 3
    assert [r.prompt_evaluated for r in results] == [0, 0, 0] and d.kv.used == 0
    fresh = make(tiny_gguf, n_parallel=2)
    decoders.append(fresh)
    assert [r.text for r in d.run(jobs)] == [r.text for r in fresh.run(jobs)]  # nothing left behind


def test_a_request_keeps_nothing_of_the_one_before_on_its_sequence(tiny_gguf: Path,
                                                                   decoders: list[Decoder]) -> None:
    """One sequence, one request after another: each starts from fresh state (its own
    probes, text, stop strings and counts), whatever the one before left behind."""
    d = make(tiny_gguf, n_parallel=1)
    decoders.append(d)
    probed = job(d, "first", max_tokens=12, probe_after=[b""])  # "" ends every output: every position
    plain = job(d, "second", seed=1, max_tokens=200)
    cut = Job(**{**vars(plain), "stop": [*plain.stop, "e"]})
    first, second = d.run([probed, plain])
    assert first.choices and second.choices == []  # the first request's probes stay with it
    alone = make(tiny_gguf, n_parallel=1)
    decoders.append(alone)
    assert second.text == alone.run([plain])[0].text  # the tiny model: no batch effects
    (after,) = d.run([cut])  # a later call on the same sequence, with a stop string
    assert after.text == second.text.split("e")[0] and after.completion_tokens <= second.completion_tokens
    assert after.choices == [] and all(r is None for r in d.running)
