"""Teacher-forced scoring: the log-probs a model gives a response it did not write.

A request (core.backend.ScoreRequest) is a pair of sequences decoded with no sampling:
the conditional one, the chat's prompt as `create_chat_completion` renders it (the
generation prompt included, prompt.chat_prompt) followed by the response's tokens, and
the baseline one, the baseline chat's prompt followed by the same tokens. Both go through
the same `llama_decode` calls: the prompt prefix they share (the system turn) is decoded
once, each of its tokens carrying both seq ids (the cache is unified, prompt.load_llama,
so these are not "coupled sequences"), and each sequence's own tokens follow in the same
batch. Logits are asked for only where they predict a response token or, in the
conditional sequence, the end-of-turn token after the whole response: from the prompt's
last position to the response's last. A log-softmax over the full vocabulary there gives
each token's log-prob.

The response is tokenized as the model would have written it (`response_tokens`): no BOS,
special-token text kept as text, no space in front (SentencePiece adds one). The
end-of-turn token is the one the chat template closes an assistant turn with
(`end_of_turn`); None where it closes with none.

Sequence ids: the decoder's n_parallel first, then one pair per slot. Pairs are decoded
in waves, up to n_parallel pairs whose cells fit the cache together: each wave starts
from an emptied cache (the decoder's cached prompts go) and frees nothing before it ends;
a pair whose two sequences do not fit even an empty cache together decodes them one after
the other, alone in its wave. The cache is empty after a call.

Exact log-probs (CPU; prompt.FLASH_ATTN): a step carries at most EXACT_STEP tokens. Under
these rules a sequence's log-probs are the same bit for bit however requests are grouped,
chunked or preceded, and equal its tokens evaluated alone in a fresh context with
batches under 64 tokens; otherwise llama.cpp's kernels round differently (measured on
SmolLM2-135M Q4_1: 0.05 nats a token on average, up to 0.35). A GPU model takes n_batch
steps, with no such promise.

Long inputs: a step carries at most SCORE_ROWS logit rows too, so long prompts and
responses are decoded in chunks. A prompt + response longer than the context one
sequence may use (n_ctx) is scored on the response tokens whose positions fit, with no
end-of-turn log-prob (`truncated`); a prompt that fills the context scores none.
"""

from __future__ import annotations

import ctypes
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np

from gra_local.backends.llama.decode import Decoder
from gra_local.backends.llama.kv import common_prefix
from gra_local.backends.llama.prompt import chat_prompt

EXACT_STEP = 32
"""Tokens a step carries at most on the CPU: llama.cpp's CPU flash attention takes another
kernel, which rounds differently, from 64 tokens a batch (and for a lone token past 256
cells: `PairScorer._step` never sends one). It costs about 15 % of the speed of 512-token
steps (SmolLM2, one thread)."""
SCORE_ROWS = 128
"""Logit rows one step asks for at most (llama.cpp keeps n_vocab floats for each)."""
LSE_ROWS = 32
"""Rows log-softmaxed together (a float64 copy of each)."""
BOTH = 2
"""The side of a prefix token decoded into both sequences of its pair."""
SENTINEL = "Qz7Xq"
"""An assistant turn's text, to find what the chat template puts after it."""

Item = tuple[int, int, int, int]
"""(token, position, side: 0 conditional, 1 baseline or BOTH, k): k ≥ 0 asks for the
logits that predict the k-th response token (k = scored: the end-of-turn token)."""
Done = Callable[[int, "Scored"], None]


@dataclass
class Scored:
    """What a request gets back: the fields of core.backend.ScoreResult."""

    finish_reason: str
    logprobs: list[float] = field(default_factory=list)
    baseline_logprobs: list[float] = field(default_factory=list)
    end_logprob: float | None = None
    response_tokens: int = 0
    truncated: bool = False
    prompt_tokens: int = 0
    seconds: float = 0.0


@dataclass
class Pair:
    """One request while it is scored."""

    index: int
    prompts: tuple[list[int], list[int]]  # conditional, baseline
    response: list[int]
    scored: int  # response tokens scored: all of them unless truncated
    end: bool  # the end-of-turn token is scored after the whole response
    items: list[Item | None] = field(default_factory=list)  # None: side 0 done, empty the cache
    need: int = 0  # KV cells it fills at most
    seqs: tuple[int, int] = (-1, -1)
    cursor: int = 0  # items decoded
    stop: int = 0  # the None among the items, else their number
    rows_left: int = 0
    logprobs: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    end_logprob: float | None = None
    started: float = 0.0


def piece(vocab: Any, token: int, special: bool) -> bytes:
    size = 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, special)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def response_tokens(llm: Any, text: str) -> list[int]:
    """`text`'s tokens as the model writes them after its generation prompt: no BOS, no
    special tokens parsed, and no space SentencePiece would put in front of the first word
    (tokenized after a newline instead, whose tokens are then dropped)."""
    data = text.encode("utf-8")
    tokens = [int(t) for t in llm.tokenize(data, add_bos=False, special=False)]
    vocab = llm._model.vocab
    if b"".join(piece(vocab, t, False) for t in tokens) != data:
        head = list(llm.tokenize(b"\n", add_bos=False, special=False))
        both = [int(t) for t in llm.tokenize(b"\n" + data, add_bos=False, special=False)]
        if both[:len(head)] == head and b"".join(piece(vocab, t, False) for t in both[len(head):]) == data:
            tokens = both[len(head):]
    return tokens


def end_of_turn(llm: Any) -> int | None:
    """The token right after an assistant turn's text in the chat template (`<|im_end|>`
    in ChatML), or else the one token the chat format stops on; None unless it ends
    generation (llama_vocab_is_eog). Not `llama_vocab_eot`: llama.cpp guesses it from the
    token texts (SmolLM2's is `<|endoftext|>`, its template closes with `<|im_end|>`)."""
    vocab = llm._model.vocab
    try:
        tokens, stop = chat_prompt(llm, [{"role": "user", "content": "Hi"},
                                         {"role": "assistant", "content": SENTINEL}])
    except Exception:  # a template that refuses this chat: no end-of-turn token known
        return None
    text, found = b"", None
    for token in tokens:
        if text.endswith(SENTINEL.encode()):
            found = token
            break
        text += piece(vocab, token, True)
    if found is not None and llama_cpp.llama_vocab_is_eog(vocab, found):
        return int(found)
    for s in stop:
        one = llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)
        if len(one) == 1 and llama_cpp.llama_vocab_is_eog(vocab, one[0]):
            return int(one[0])
    return None


class PairScorer:
    """Scores requests in the decoder's context, on the sequence ids after its own."""

    def __init__(self, decoder: Decoder, exact: bool = True) -> None:
        self.decoder = decoder
        self.llm = decoder.llm
        self.ctx = decoder.ctx
        self.base = len(decoder.running)
        self.slots = min(self.base, (int(llama_cpp.llama_n_seq_max(self.ctx)) - self.base) // 2)
        if self.slots < 1:
            raise ValueError("this context has no sequence ids left for scoring")
        self.max_step = min(EXACT_STEP, decoder.n_batch) if exact else decoder.n_batch
        """Tokens a step carries at most: EXACT_STEP where `exact` (a CPU model), else
        n_batch (a GPU's kernels make no such promise, and want large batches)."""
        self.eot = end_of_turn(self.llm)
        self._results: list[Scored | None] = []
        self._on_done: Done | None = None

    def run(self, requests: Sequence[dict], cancelled: Callable[[], bool] = lambda: False,
            on_done: Done | None = None) -> list[Scored]:
        """Score every request ({"messages", "baseline", "response"}); results in request
        order. `on_done(index, scored)` hears each as it is answered; when `cancelled()`
        turns true the unanswered ones end "cancelled". The cache is empty afterwards."""
        prepared = [self._prepare(r) for r in requests]  # a template error fails the call here
        self._results, self._on_done = [None] * len(requests), on_done
        queue: deque[Pair] = deque()
        for index, (prompts, response) in enumerate(prepared):
            n_ctx, n = self.decoder.n_ctx, len(response)
            fits = all(len(p) + n <= n_ctx for p in prompts)
            scored = n if fits else max(0, min(n_ctx - len(p) for p in prompts))
            pair = Pair(index, prompts, response, scored, fits and self.eot is not None)
            if scored:
                queue.append(pair)
            else:  # empty, or a prompt that fills the context
                self._answer(pair, "ok" if n else "empty")
        wave: list[Pair] = []
        try:
            while queue and not cancelled():
                wave = self._wave(queue)
                while any(p.rows_left for p in wave) and not cancelled():
                    if not self._step(wave, cancelled):
                        break  # stopped midway by the cancel
                    if self.decoder.governor is not None:
                        self.decoder.governor.tick()
                    for pair in wave:
                        if not pair.rows_left and self._results[pair.index] is None:
                            self._answer(pair, "ok")
            for pair in [*wave, *queue]:
                if self._results[pair.index] is None:
                    self._answer(pair, "cancelled")
        finally:
            if wave:
                self.decoder.clear()
        return [r for r in self._results if r is not None]

    def _prepare(self, request: dict) -> tuple[tuple[list[int], list[int]], list[int]]:
        cond = chat_prompt(self.llm, request["messages"])[0]
        base = chat_prompt(self.llm, request["baseline"])[0]
        return (cond, base), response_tokens(self.llm, str(request["response"]))

    # --- a wave: pairs decoded together into an emptied cache ----------------------------

    def _wave(self, queue: deque[Pair]) -> list[Pair]:
        """The next pairs in order while a slot and their cells are free in the emptied
        cache (the decoder's cached prompts go); the first one always, its two sequences one
        after the other where the cache holds only one. Nothing is freed before the wave
        ends: with flash attention a sequence's logits depend on the order of its cells,
        which follows its positions only while the cache fills up from its first cell."""
        self.decoder.clear()
        wave: list[Pair] = []
        free = self.decoder.n_cells
        while queue and len(wave) < self.slots:
            pair = queue[0]
            self._plan(pair, split=False)
            if pair.need > free:
                if wave:
                    break
                self._plan(pair, split=True)
            queue.popleft()
            free -= pair.need
            pair.seqs = (self.base + 2 * len(wave), self.base + 2 * len(wave) + 1)
            pair.started = time.perf_counter()
            wave.append(pair)
        return wave

    def _plan(self, pair: Pair, split: bool) -> None:
        """The pair's items in decoding order: the shared prefix (both seq ids), then each
        side's tokens up to the last one whose logits are needed (with `split`, the
        baseline's after a None: the cache is emptied of the conditional first)."""
        a, b = pair.prompts
        shared = 0 if split else min(common_prefix(a, b), len(a) - 1, len(b) - 1)
        sides: list[list[Item]] = []
        sizes = []
        for side, prompt in enumerate(pair.prompts):
            tokens = prompt + pair.response
            sizes.append(len(prompt) + pair.scored - (0 if side == 0 and pair.end else 1))
            sides.append([(tokens[pos], pos, side, pos - len(prompt) + 1) for pos in range(shared, sizes[-1])])
        # side by side from the response's start (a chunk holds both sides' same rows), or
        # with `split` one side after the other
        both: list[Item] = sorted(sides[0] + sides[1], key=lambda item: (item[3], item[2]))
        items: list[Item | None] = [(a[pos], pos, BOTH, -1) for pos in range(shared)]
        items += [*sides[0], None, *sides[1]] if split else both
        pair.items = items
        pair.stop = items.index(None) if split else len(items)
        pair.rows_left = sum(1 for item in items if item is not None and item[3] >= 0)
        pair.need = max(sizes) if split else sum(sizes) - shared

    # --- one step ------------------------------------------------------------------------

    def _step(self, wave: list[Pair], cancelled: Callable[[], bool]) -> bool:
        """Decode the next chunk of every pair of the wave; False when a cancel stopped it."""
        for pair in wave:
            if pair.cursor < len(pair.items) and pair.items[pair.cursor] is None:
                self.decoder.clear()  # split: the baseline fills the cache from its first cell
                pair.cursor += 1
        left = sum(pair.stop - pair.cursor if pair.cursor < pair.stop else len(pair.items) - pair.cursor
                   for pair in wave)
        limit = self.max_step
        if left == limit + 1 and limit > 1:
            limit -= 1  # a lone last token would take another kernel past 256 cells (split KV)
        while True:
            rows, taken = self._fill(wave, limit)
            ret = self.decoder.decode_batch(cancelled)
            if ret == 0:
                break
            if ret == 2:
                return False
            if ret != 1 or limit == 1:
                raise RuntimeError(f"llama_decode failed while scoring (returned {ret})")
            limit = max(1, self.decoder.batch.n_tokens // 2)  # no KV slot: a smaller step
        for pair, n in taken:
            pair.cursor += n
        self._read(rows)
        return True

    def _fill(self, wave: list[Pair], limit: int) -> tuple[list[tuple[Pair, int, int]], list[tuple[Pair, int]]]:
        b = self.decoder.batch
        b.n_tokens = 0
        rows: list[tuple[Pair, int, int]] = []
        taken: list[tuple[Pair, int]] = []
        for pair in wave:
            n = pair.cursor
            while n < len(pair.items) and b.n_tokens < limit:
                item = pair.items[n]
                if item is None or (item[3] >= 0 and len(rows) >= SCORE_ROWS):
                    break
                token, pos, side, k = item
                seqs = pair.seqs if side == BOTH else (pair.seqs[side],)
                j = b.n_tokens
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = token, pos, len(seqs), k >= 0
                for s, seq in enumerate(seqs):
                    b.seq_id[j][s] = seq
                if k >= 0:
                    rows.append((pair, side, k))
                b.n_tokens += 1
                n += 1
            taken.append((pair, n - pair.cursor))
        return rows, taken

    def _read(self, rows: list[tuple[Pair, int, int]]) -> None:
        """Log-softmax of the step's logit rows (in batch order) at each row's target."""
        if not rows:
            return
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(self.ctx),
                                       shape=(len(rows), self.decoder.n_vocab))
        for start in range(0, len(rows), LSE_ROWS):
            block = logits[start:start + LSE_ROWS].astype(np.float64)
            top = block.max(axis=1)
            lse = top + np.log(np.exp(block - top[:, None]).sum(axis=1))
            for r, (pair, side, k) in enumerate(rows[start:start + LSE_ROWS]):
                if k < pair.scored:
                    pair.logprobs[side].append(float(block[r, pair.response[k]] - lse[r]))
                else:
                    assert self.eot is not None
                    pair.end_logprob = float(block[r, self.eot] - lse[r])
                pair.rows_left -= 1

    # --- answers ---------------------------------------------------------------------------

    def _answer(self, pair: Pair, reason: str) -> None:
        done = reason == "ok"
        scored = Scored(reason, response_tokens=len(pair.response), prompt_tokens=len(pair.prompts[0]),
                        truncated=pair.scored < len(pair.response) and reason == "ok",
                        seconds=time.perf_counter() - pair.started if pair.started else 0.0)
        if done:
            scored.logprobs, scored.baseline_logprobs = pair.logprobs
            scored.end_logprob = pair.end_logprob
        self._results[pair.index] = scored
        if self._on_done is not None:
            self._on_done(pair.index, scored)
