"""Batched decoding: up to n_parallel sequences in one llama.cpp context.

One `llama_decode` per step carries every running sequence's next token plus prompt
chunks of newly admitted ones (at most n_batch tokens). Each request keeps its own
sampler chain, seed, grammar (checked lazily, `sampling.Picker`), stop strings and token
budget, in a `jobs.Running` made when it is admitted and dropped when it ends, and ends
alone; its sequence takes the next queued request at once (continuous batching); one
whose prompt leaves too little room in a sequence's context ends "too_long" at once,
undecoded. A job may ask for probes (`Job.probe_after`): at those positions the
distribution its token is chosen from comes back with its text (`Outcome.choices`). A new
request starts from the longest prefix any sequence holds in the unified KV cache
(`llama_memory_seq_cp` shares those cells): a prompt prefix shared by several requests, or
by consecutive calls, is decoded once.

Admission control: a request waits until its cells are free: prompt minus the reused
prefix plus its token budget, counting what the running sequences may still grow to. So
the cache cannot overflow in normal use; if `llama_decode` still finds no slot (it
returns 1), the step is retried with fewer sequences, and one sequence that cannot
continue alone ends with "length".

Determinism: sampling is seeded per request, but the logits of a sequence depend (in
the last float bits) on the batch it was decoded in and on what the cache held before.
The same requests in the same order with the same n_parallel on a fresh worker give the
same texts; the same call on a worker that has already run others may not.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import llama_cpp

from gra_local.backends.llama.jobs import Choice, Job, Outcome, Running
from gra_local.backends.llama.kv import KvBook, common_prefix
from gra_local.backends.llama.sampling import PROBE_TEXT_FLOOR, Grammars, Picker, make_chain
from gra_local.backends.llama.threads import ThreadGovernor

PROMPT_STEP = 256
"""Prompt tokens a decode step takes at most (n_batch, if smaller): about a second of a
small model's prefill on 2 CPU cores, so a watching UI sees a long prompt advance (a step
can't be seen inside); there within 3 % of 512-token steps (measured), ms on a GPU."""
PROMPT_TOKEN_COST = 0.1
"""A prompt token's weight against a generated one in `in_flight`: a display figure."""
PARTIAL_EVERY_S = 0.25  # live text for a watching UI: a few updates a second, not per token
PARTIAL_CHARS = 600
ABORTABLE_STEP = 64
"""Steps of more tokens than this can be stopped midway by a cancel."""
WAIT_FOR_PREFIX = 32
"""A request waits one step for a running sequence to finish decoding a prompt prefix it
shares, when that saves at least this many tokens (the first requests of a call would
otherwise each decode the common system prompt)."""


Done = Callable[[int, Outcome], None]
Partial = Callable[[int, str], None]


class Decoder:
    def __init__(self, llm: Any, n_parallel: int, n_ctx: int) -> None:
        self.llm = llm
        self.ctx = llm._ctx.ctx
        model = llm._model
        self.vocab = model.vocab
        self.n_cells = int(llama_cpp.llama_n_ctx(self.ctx))
        self.n_ctx = min(int(n_ctx), self.n_cells)
        """Positions one sequence may use."""
        self.n_batch = int(llama_cpp.llama_n_batch(self.ctx))
        if not 1 <= n_parallel <= min(self.n_batch, int(llama_cpp.llama_n_seq_max(self.ctx))):
            raise ValueError(f"n_parallel {n_parallel} does not fit this context")
        m = model.model
        reuse = not (llama_cpp.llama_model_is_recurrent(m) or llama_cpp.llama_model_is_hybrid(m)
                     or llama_cpp.llama_model_n_swa(m) > 0)
        self.kv = KvBook(llama_cpp.llama_get_memory(self.ctx), n_parallel, self.n_cells, reuse)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 2)  # 2 seq ids: the scorer's shared prefix
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.picker = Picker(self.ctx, self.n_vocab)
        self.governor: ThreadGovernor | None = None
        """Set by the worker: picks the thread count between steps (threads.py)."""
        self.grammars = Grammars(self.vocab)
        self.running: list[Running | None] = [None] * n_parallel
        """By sequence id: the request it is decoding, None while it is idle."""
        self.bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        self._pieces: dict[int, bytes] = {}
        self._results: list[Outcome | None] = []
        self._on_done: Done | None = None
        self._cancelled: Callable[[], bool] = lambda: False
        # A step carrying prompt chunks can take seconds on a CPU (512 tokens of SmolLM2 on
        # one thread: ~4 s); llama.cpp's CPU backend asks this between graph nodes, so a
        # cancel stops it mid-step. Small steps go without it (a Python call per node).
        self._abort = llama_cpp.ggml_abort_callback(lambda _data: bool(self._cancelled()))
        self._no_abort = llama_cpp.ggml_abort_callback()  # NULL
        self._abort_on = False

    # --- one call ------------------------------------------------------------------------

    def run(self, jobs: Sequence[Job], cancelled: Callable[[], bool] = lambda: False,
            on_done: Done | None = None, on_partial: Partial | None = None) -> list[Outcome]:
        """Decode every job; results in job order. `on_done(index, outcome)` hears each as it
        finishes; when `cancelled()` turns true the unfinished ones end "cancelled"."""
        for i, job in enumerate(jobs):  # refuse the whole call before decoding anything
            if not job.tokens:
                raise ValueError(f"request {i}: its prompt is empty")
            if job.grammar:
                self.grammars.check(job.grammar)
        self._results, self._on_done, self._cancelled = [None] * len(jobs), on_done, cancelled
        queue = deque(i for i, job in enumerate(jobs) if not self._too_long(i, job))
        last_partial = -PARTIAL_EVERY_S  # the first text goes out at once
        try:
            while queue or self._active():
                if cancelled():
                    self._cancel(jobs, queue)
                    break
                while queue and self._admit(jobs[queue[0]], queue[0]):
                    queue.popleft()
                done = self._decode(self._plan())
                if self.governor is not None:
                    self.governor.tick()
                for run in done:
                    if run.row >= 0:
                        probe = self._probe(run) if run.job.probe_after else None
                        token = self.picker.pick(run.row, run.chain, run.grammar,
                                                 plain=run.job.repeat_penalty == 1.0)
                        if probe is not None:
                            run.choices.append(probe)
                        run.follow = (probe is not None and token is not None
                                      and self._piece(token).strip(b" ").isdigit())
                        self._take(run, token)
                    run.row = -1
                now = time.monotonic()
                if on_partial is not None and now - last_partial >= PARTIAL_EVERY_S \
                        and self._partial(on_partial):
                    last_partial = now
        except BaseException:
            self._reset()
            raise
        return [r for r in self._results if r is not None]

    def _active(self) -> list[Running]:
        return [r for r in self.running if r is not None]

    def in_flight(self) -> tuple[float, int]:
        """How far the running sequences are, for a watching UI (a call's progress between
        its results): the sum of each one's share of its work done, capped at 0.99 (a
        sequence is done when it ends), and the tokens they generated. A sequence's work is
        its prompt still to decode at admission, each token weighed PROMPT_TOKEN_COST, and
        its token budget."""
        active = self._active()
        share = math.fsum(min((PROMPT_TOKEN_COST * (r.evaluated - len(r.pending)) + len(r.gen))
                              / max(PROMPT_TOKEN_COST * r.evaluated + r.budget, 1e-9), 0.99)
                          for r in active)
        return share, sum(len(r.gen) for r in active)

    def _budget(self, job: Job) -> int:
        room = self.n_ctx - len(job.tokens)
        return job.max_tokens if 0 < job.max_tokens < room else room

    def _too_long(self, index: int, job: Job) -> bool:
        """Answers "too_long" when the prompt leaves under min_room (else max_tokens) free."""
        if too_long := len(job.tokens) + max(1, job.min_room or job.max_tokens) > self.n_ctx:
            self._answer(index, Outcome(text="", finish_reason="too_long", prompt_tokens=len(
                job.tokens), completion_tokens=0, prompt_evaluated=0, seconds=0.0))
        return too_long

    def _free(self) -> int:
        return self.n_cells - self.kv.used - sum(r.growth() for r in self._active())

    # --- admission: an idle sequence, the longest cached prefix, enough free cells -------

    def _admit(self, job: Job, index: int) -> bool:
        idle = [seq for seq, run in enumerate(self.running) if run is None]
        if not idle:
            return False
        head = job.tokens[:-1]  # at least one prompt token is decoded: its logits start the reply
        source, reused = None, 0
        for seq in range(len(self.running)):
            n = self.kv.common_prefix(seq, head)
            if n > reused:
                source, reused = seq, n
        if self.kv.reuse and any(common_prefix(r.job.tokens, head) >= reused + WAIT_FOR_PREFIX
                                 for r in self._active() if r.pending):
            return False  # a running sequence is decoding a longer common prefix: take it next step
        if source is not None and self.running[source] is None:
            target = source
            reused = self.kv.keep(target, reused)
        else:
            target = min(idle, key=lambda seq: (len(self.kv.tokens[seq]), seq))
            if source is not None:
                self.kv.copy_prefix(source, target, reused)
            else:
                self.kv.keep(target, 0)
        budget = self._budget(job)
        need = len(job.tokens) - reused + budget
        for other in idle:  # idle sequences' caches are only a convenience: give them up
            if self._free() >= need:
                break
            if other != target:
                self.kv.keep(other, 0)
        if self._free() < need and self._active():
            return False  # wait: running sequences will finish and free their cells
        chain = make_chain(self.n_vocab, job.temperature, job.top_p, job.seed, job.repeat_penalty)
        grammar = self.grammars.new(job.grammar) if job.grammar else None
        self.running[target] = Running(seq=target, job=job, index=index, budget=budget,
                                       pending=job.tokens[reused:], chain=chain, grammar=grammar,
                                       started=time.perf_counter())
        return True

    # --- one step ------------------------------------------------------------------------

    def _plan(self) -> list[tuple[Running, list[int]]]:
        """Each running sequence's sampled token, then prompt chunks, within n_batch."""
        active = self._active()
        entries = [(r, [r.last]) for r in active if r.last is not None]
        room = min(self.n_batch, PROMPT_STEP) - len(entries)
        for run in active:
            if run.pending and room > 0:
                entries.append((run, run.pending[:room]))
                room -= len(entries[-1][1])
        return entries

    def _decode(self, entries: list[tuple[Running, list[int]]]) -> list[Running]:
        """Decode the step, with fewer sequences while llama.cpp finds no KV slot; returns
        the requests that advanced."""
        while entries:
            rows = self._fill(entries)
            ret = self.decode_batch(self._cancelled)
            if ret == 0:
                for (run, tokens), row in zip(entries, rows, strict=True):
                    self.kv.appended(run.seq, tokens)
                    if run.last is not None and not run.pending:
                        run.last = None
                    else:
                        del run.pending[:len(tokens)]
                    run.row = row
                return [run for run, _ in entries]
            if ret == 2:  # aborted by a cancel; llama.cpp dropped the step's positions
                for run, _ in entries:
                    llama_cpp.llama_memory_seq_rm(self.kv.mem, run.seq, len(self.kv.tokens[run.seq]), -1)
                return []
            if ret != 1:
                raise RuntimeError(f"llama_decode failed (returned {ret})")
            if len(entries) > 1:
                entries = entries[:len(entries) // 2]
            elif len(entries[0][1]) > 1:
                run, tokens = entries[0]
                entries = [(run, tokens[:len(tokens) // 2])]
            else:
                self._finish(entries[0][0], "length")  # no KV cell even for one token
                return []
        return []

    def decode_batch(self, cancelled: Callable[[], bool]) -> int:
        """`llama_decode` of `self.batch` (also the scorer's, scoring.py): 0 done, 1 no KV
        slot, 2 stopped midway once `cancelled()` turned true (a step of more than
        ABORTABLE_STEP tokens; llama.cpp dropped its positions), anything else an error."""
        self._cancelled = cancelled
        big = self.batch.n_tokens > ABORTABLE_STEP
        if big != self._abort_on:
            llama_cpp.llama_set_abort_callback(self.ctx, self._abort if big else self._no_abort, None)
            self._abort_on = big
        return int(llama_cpp.llama_decode(self.ctx, self.batch))

    def _fill(self, entries: list[tuple[Running, list[int]]]) -> list[int]:
        b = self.batch
        b.n_tokens = 0
        rows = []
        for run, tokens in entries:
            pos = len(self.kv.tokens[run.seq])
            for k, token in enumerate(tokens):
                j = b.n_tokens
                b.token[j], b.pos[j], b.n_seq_id[j] = token, pos + k, 1
                b.seq_id[j][0] = run.seq
                b.logits[j] = False
                b.n_tokens += 1
            wants = run.last is not None and not run.pending or len(tokens) == len(run.pending)
            if wants:
                b.logits[b.n_tokens - 1] = True
            rows.append(b.n_tokens - 1 if wants else -1)
        return rows

    # --- a sampled token -----------------------------------------------------------------

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            size = 64
            while True:
                buf = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, size, 0, False)
                if n >= 0:
                    break
                size = -n
            piece = self._pieces[token] = buf.raw[:n]
        return piece

    def _probe(self, run: Running) -> Choice | None:
        """The distribution this position's token is chosen from, when it follows one of the
        job's `probe_after` strings or a probed position that chose digits; None otherwise.
        Computed before the pick, which it leaves unchanged (the grammar only filters)."""
        if not run.follow and not any(run.out.endswith(p) for p in run.job.probe_after):
            return None
        probs: dict[str, float] = {}
        for token, p in self.picker.distribution(run.row, run.grammar).items():
            text = self._piece(token).decode("utf-8", errors="ignore")
            if text:  # end-of-generation and other tokens that spell nothing
                probs[text] = probs.get(text, 0.0) + p
        # the final text is decoded the same way: its characters before this token
        offset = len(bytes(run.out).decode("utf-8", errors="ignore"))
        return Choice(offset, {t: p for t, p in probs.items() if p >= PROBE_TEXT_FLOOR})

    def _take(self, run: Running, token: int | None) -> None:
        if run.first is None:
            run.first = time.perf_counter() - run.started
        if token is None:  # the grammar allows nothing: never unconstrained output
            self._finish(run, "length")
            return
        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            self._finish(run, "stop")
            return
        piece = self._piece(token)
        if not run.gen and token == self.bos and piece.startswith(b" "):
            piece = piece[1:]  # as llama-cpp-python's detokenize
        before = len(run.out)
        run.gen.append(token)
        run.out += piece
        # as llama-cpp-python: the first stop string (in list order) present cuts the text
        longest = max((len(s) for s in run.stops), default=0)
        for stop in run.stops:
            at = run.out.find(stop, max(0, before - longest + 1))
            if at >= 0:
                run.cut = at
                self._finish(run, "stop")
                return
        if len(run.gen) >= run.budget:
            self._finish(run, "length")
            return
        run.last = token

    def _finish(self, run: Running, reason: str) -> None:
        job = run.job
        text = bytes(run.out if run.cut is None else run.out[:run.cut])
        outcome = Outcome(text=text.decode("utf-8", errors="ignore"), finish_reason=reason,
                          prompt_tokens=len(job.tokens), completion_tokens=len(run.gen),
                          prompt_evaluated=run.evaluated - len(run.pending),
                          seconds=time.perf_counter() - run.started,
                          first_token_seconds=run.first)
        outcome.choices = [c for c in run.choices if c.offset < len(outcome.text)]
        self._release(run)
        self._answer(run.index, outcome)

    def _answer(self, index: int, outcome: Outcome) -> None:
        self._results[index] = outcome
        if self._on_done is not None:
            self._on_done(index, outcome)

    def _release(self, run: Running) -> None:
        """The request is over: its samplers are freed, its sequence is idle (its cells stay
        in the cache for a later request's prefix) and its state is dropped."""
        llama_cpp.llama_sampler_free(run.chain)
        if run.grammar is not None:
            llama_cpp.llama_sampler_free(run.grammar)
        self.running[run.seq] = None

    def _cancel(self, jobs: Sequence[Job], queue: deque[int]) -> None:
        for run in self._active():
            self._finish(run, "cancelled")
        for index in queue:  # the call ends here: the queue is not read again
            self._answer(index, Outcome(text="", finish_reason="cancelled", prompt_tokens=len(
                jobs[index].tokens), completion_tokens=0, prompt_evaluated=0, seconds=0.0))

    def _partial(self, on_partial: Partial) -> bool:
        """Send the watched sequence's text so far; False when no running one has any yet
        (the next step tries again, so the first text goes out as soon as there is some)."""
        watched = [r for r in self._active() if r.job.stream_partials and r.out]
        if not watched:
            return False
        run = min(watched, key=lambda r: r.index)
        on_partial(run.index, bytes(run.out[-PARTIAL_CHARS:]).decode("utf-8", errors="ignore"))
        return True

    def _reset(self) -> None:
        """After an error: no sequence runs, and the cache is empty (its state is unknown)."""
        for run in self._active():
            self._release(run)
        llama_cpp.llama_memory_clear(self.kv.mem, True)
        self.kv = KvBook(self.kv.mem, len(self.running), self.n_cells, self.kv.reuse)

    def clear(self) -> None:
        """Empty the cache between calls (the scorer's waves, scoring.py): its next cells are
        taken from the first one up."""
        self._reset()

    def close(self) -> None:
        self._reset()
        self.grammars.close()
        llama_cpp.llama_batch_free(self.batch)
