"""Per-sequence samplers and the lazy grammar check.

Each sequence owns a sampler chain (its own seed) and, for structured steps, a grammar
sampler. llama-cpp-python puts the grammar inside the chain, so every token is checked
against the whole vocabulary (15–35 ms of CPU a token at 152k entries). Here, as in
llama.cpp's common/sampling.cpp, the chain samples first and the grammar checks only the
chosen token; only when it refuses that token is the grammar applied to the whole
vocabulary and the chain run again. Either way the token accepted into the grammar is one
it allowed: llama.cpp aborts the process on any other.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import llama_cpp
import numpy as np

TOP_K = 40
MIN_P = 0.05
SHORTLIST = 256
"""Tokens (the most likely by logit) the grammar is checked against first when it refused
the chain's choice, before a pass over the whole vocabulary."""
MIN_P_GAP = -math.log(MIN_P)
"""min_p keeps a token only if its logit is within this of the best one's (ln 20 ≈ 3.0)."""
PENALTY_LAST_N = 64  # llama-cpp-python's default last_n_tokens_size

# A probe (`jobs.Job.probe_after`) has two floors, at two stages: the picker keeps the
# tokens of at least PROBE_TOKEN_FLOOR (`Picker.distribution`), the decoder sums those that
# spell the same text and reports the texts of at least PROBE_TEXT_FLOOR (`jobs.Choice`).
PROBE_TEXT_FLOOR = 1e-3
"""A probe reports a text only if its probability, summed over the tokens that spell it,
is at least this (decode.Decoder._probe): what a score or verdict distribution holds."""
PROBE_TOKEN_FLOOR = 1e-4
"""`Picker.distribution` leaves out tokens under this probability, before their texts are
known: it bounds the work (at most 1/PROBE_TOKEN_FLOOR tokens for the decoder to spell
out, where a grammar allows most of the vocabulary, as inside a JSON string). Ten times
below PROBE_TEXT_FLOOR because several tokens may spell one text: a token under the text
floor may still count towards a text over it."""
PROBE_TOP = 32
"""A probe of free text (no grammar) reports this many of the most likely tokens."""

_TOKEN_DTYPE = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class GrammarError(ValueError):
    """A GBNF grammar llama.cpp could not parse (its parser's message is in the worker log)."""


def make_chain(n_vocab: int, temperature: float, top_p: float, seed: int,
               repeat_penalty: float = 1.0) -> Any:
    """The chain llama-cpp-python builds for a chat call, minus the grammar: penalties
    (when repeat_penalty ≠ 1) → top_k 40 → top_p → min_p 0.05 → temp → dist(seed);
    greedy at temperature 0."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    if repeat_penalty != 1.0:
        add(llama_cpp.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, repeat_penalty, 0.0, 0.0))
    if temperature == 0.0:
        add(llama_cpp.llama_sampler_init_greedy())
    elif temperature < 0.0:
        add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    else:
        add(llama_cpp.llama_sampler_init_top_k(TOP_K))
        add(llama_cpp.llama_sampler_init_top_p(top_p, 1))
        add(llama_cpp.llama_sampler_init_min_p(MIN_P, 1))
        add(llama_cpp.llama_sampler_init_temp(temperature))
        add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


class Grammars:
    """Grammar samplers by GBNF text: each text is parsed once, each sequence gets a clone
    of the parsed, untouched one."""

    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab
        self._parsed: dict[str, Any] = {}

    def check(self, text: str) -> None:
        """Parse `text` now; GrammarError when llama.cpp cannot (never unconstrained output)."""
        if text in self._parsed:
            return
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, text.encode("utf-8"), b"root")
        if not sampler:
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            raise GrammarError(f"llama.cpp could not parse the GBNF grammar starting {first[:80]!r} "
                               "(its parser's message is in the worker log)")
        self._parsed[text] = sampler

    def new(self, text: str) -> Any:
        self.check(text)
        return llama_cpp.llama_sampler_clone(self._parsed[text])

    def close(self) -> None:
        for sampler in self._parsed.values():
            llama_cpp.llama_sampler_free(sampler)
        self._parsed.clear()


class Picker:
    """Chooses a sequence's next token from one row of the last batch's logits."""

    def __init__(self, ctx: Any, n_vocab: int) -> None:
        self.ctx = ctx
        self.n_vocab = n_vocab
        self.rejected = 0
        """Tokens the chain chose and the grammar refused."""
        self.shortlisted = 0
        """Refused tokens replaced from the shortlist (the rest cost a whole-vocabulary pass)."""
        self._ids = np.arange(n_vocab, dtype=np.intc)
        self._cur = np.recarray((n_vocab,), dtype=_TOKEN_DTYPE)
        self._cur_arr = llama_cpp.llama_token_data_array(
            data=self._cur.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=n_vocab, selected=-1, sorted=False)
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_arr = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._one, llama_cpp.llama_token_data_p), size=1, selected=-1, sorted=False)

    def _load(self, row: int) -> None:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, row), shape=(self.n_vocab,))
        self._cur.id[:] = self._ids
        self._cur.logit[:] = logits
        self._cur.p[:] = 0.0
        self._cur_arr.size = self.n_vocab
        self._cur_arr.selected = -1
        self._cur_arr.sorted = False

    def _run_chain(self, chain: Any) -> tuple[int, float]:
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(self._cur_arr))
        chosen = self._cur[self._cur_arr.selected]
        return int(chosen.id), float(chosen.logit)

    def _allowed(self, grammar: Any, token: int) -> bool:
        one: Any = self._one[0]
        one.id, one.logit, one.p = token, 1.0, 0.0
        self._one_arr.size, self._one_arr.selected, self._one_arr.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(self._one_arr))
        return not math.isinf(self._one[0].logit)

    def _shortlist(self, row: int) -> float:
        """The SHORTLIST most likely tokens of `row` in the candidates array; returns the
        lowest logit among them (every token left out has at most that)."""
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, row), shape=(self.n_vocab,))
        top = np.argpartition(logits, -SHORTLIST)[-SHORTLIST:]
        n = len(top)
        self._cur.id[:n] = top
        self._cur.logit[:n] = logits[top]
        self._cur.p[:n] = 0.0
        self._cur_arr.size, self._cur_arr.selected, self._cur_arr.sorted = n, -1, False
        return float(self._cur.logit[:n].min())

    def _shortlist_mass(self, row: int) -> tuple[float, float]:
        """`_shortlist(row)`; returns the row's best logit and the summed weight,
        exp(logit − that best), of every token left out of the shortlist."""
        self._shortlist(row)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, row),
                                       shape=(self.n_vocab,)).astype(np.float64)
        top = float(logits.max())
        n = self._cur_arr.size
        kept = np.exp(self._cur.logit[:n].astype(np.float64) - top).sum()
        return top, float(np.exp(logits - top).sum() - kept)

    def _from_shortlist(self, row: int, chain: Any, grammar: Any, plain: bool) -> int | None:
        """A grammar-allowed token chosen among the most likely ones, when a whole-vocabulary
        pass would choose among the same tokens: every token left out has a logit at most
        the shortlist's lowest, so if TOP_K allowed tokens are in the shortlist, top_k keeps
        exactly those; and the chain's min_p drops every token more than ln(1/min_p) below
        the best allowed one, so if the best allowed token is that far above everything left
        out, nothing left out survives either (top_p may then see a slightly different tail
        before min_p cuts it). A penalty chain changes logits first: it always takes the
        whole pass. None: take the whole pass."""
        if not plain or self.n_vocab <= SHORTLIST:
            return None
        floor = self._shortlist(row)
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(self._cur_arr))
        n = self._cur_arr.size
        allowed = self._cur.logit[:n][np.isfinite(self._cur.logit[:n])]
        if not len(allowed) or (len(allowed) < TOP_K and allowed.max() - floor <= MIN_P_GAP):
            return None
        token, logit = self._run_chain(chain)
        return None if math.isinf(logit) else token

    def distribution(self, row: int, grammar: Any | None) -> dict[int, float]:
        """Token id → probability at `row`: softmax at temperature 1 over the tokens `grammar`
        allows, or over the whole vocabulary without one; only entries of at least
        PROBE_TOKEN_FLOOR (at most PROBE_TOP without a grammar). Empty when the grammar allows
        nothing. With a grammar the SHORTLIST most likely tokens are tried first: their
        allowed ones stand for the whole vocabulary only when everything left out weighs
        at most PROBE_TOKEN_FLOOR of what they weigh (the mass of all tokens outside the
        shortlist, allowed or not, bounds what the grammar could add); else a whole-
        vocabulary pass. (At a verdict's first letter the shortlist may allow "f" alone
        while "fail", "p" and "pass" sit just outside it: measured, {"f": 1.0} against
        0.80 over the vocabulary, tests/backends/llama/test_batched_equals_serial.py.)
        Applying a grammar sampler leaves its state as it was (only accepting a token
        moves it), and `pick` reloads the row: no sampler changes."""
        if grammar is not None and self.n_vocab > SHORTLIST:
            top, left_out = self._shortlist_mass(row)
            got = self._allowed_probs(grammar, top=None)
            allowed = self._cur.logit[:self._cur_arr.size].astype(np.float64)  # refused: -inf
            if got and left_out <= PROBE_TOKEN_FLOOR * np.exp(allowed - top).sum():
                return got
        self._load(row)
        return self._allowed_probs(grammar, top=PROBE_TOP if grammar is None else None)

    def _allowed_probs(self, grammar: Any | None, top: int | None) -> dict[int, float]:
        if grammar is not None:
            llama_cpp.llama_sampler_apply(grammar, ctypes.byref(self._cur_arr))
        n = self._cur_arr.size
        logits = self._cur.logit[:n].astype(np.float64)
        allowed = np.flatnonzero(np.isfinite(logits))
        if not len(allowed):
            return {}
        probs = np.exp(logits[allowed] - logits[allowed].max())
        probs /= probs.sum()
        keep = np.flatnonzero(probs >= PROBE_TOKEN_FLOOR)
        if top is not None and len(keep) > top:
            keep = keep[np.argpartition(probs[keep], -top)[-top:]]
        ids = self._cur.id[:n][allowed]
        return {int(ids[k]): float(probs[k]) for k in keep}

    def pick(self, row: int, chain: Any, grammar: Any | None, plain: bool = False) -> int | None:
        """The next token, accepted into `grammar` and `chain`; None when the grammar
        allows no token at all (a dead end: the caller ends the sequence). `plain`: the
        chain has no penalties (the shortlist may then stand in for the whole vocabulary)."""
        self._load(row)
        token, _ = self._run_chain(chain)
        if grammar is not None and not self._allowed(grammar, token):
            self.rejected += 1
            short = self._from_shortlist(row, chain, grammar, plain)
            if short is not None:
                self.shortlisted += 1
                token = short
            else:
                self._load(row)
                llama_cpp.llama_sampler_apply(grammar, ctypes.byref(self._cur_arr))
                if not np.isfinite(self._cur.logit).any():
                    return None
                token, logit = self._run_chain(chain)
                if math.isinf(logit):  # the chain could only choose a refused token
                    return None
        if grammar is not None:
            llama_cpp.llama_sampler_accept(grammar, token)
        llama_cpp.llama_sampler_accept(chain, token)
        return token
