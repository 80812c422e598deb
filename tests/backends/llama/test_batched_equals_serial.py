"""Batched equals serial on the real embedded SmolLM2-135M, whose logits depend on every
earlier token (real attention).

The tiny GGUFs of test_llama_decode.py give logits that depend only on the last token, so
a wrong sequence id, position or prefix copy changes nothing there. Here the decoder
(decode.py) is teacher-forced: each job's prompt is a chat prompt followed by a partial
response, greedy decoding adds a few tokens, every position of every step asks for logits
(`Forced` wraps `Decoder.decode_batch`), and the log-prob of the next token at each
decoded position is compared between n_parallel 1 and n_parallel 4. The jobs of a call
share a long system + user prompt, so at n_parallel 4 the later ones start from a copy of
the first one's cells (`KvBook.copy_prefix`, `llama_memory_seq_cp`); the second call
reuses the first call's cells (`KvBook.keep`, and copies again). `disagreements` is the
one checker: the mutation tests break the prefix copy and prove that it then reports.

Numerics: in steps under 64 tokens (scoring.EXACT_STEP) llama.cpp's CPU kernels give the
same logits bit for bit however sequences are batched (scoring.py "Exact log-probs"), so
the "exact" regime allows 1e-4 nats and measured 0. At the decoder's own n_batch (512) a
step's size picks the kernel: up to 0.25 nats measured (mean 0.008), 0.5 allowed; a
broken copy moves log-probs by several nats.

(Probe distributions against a whole-vocabulary pass: test_llama_probe_vocabulary.py.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.e2e
llama_cpp = pytest.importorskip("llama_cpp")

# these import llama_cpp: after the skip
from gra_local.backends.llama.decode import Decoder  # noqa: E402
from gra_local.backends.llama.jobs import Job, Running  # noqa: E402
from gra_local.backends.llama.prompt import chat_prompt, load_llama  # noqa: E402
from gra_local.backends.llama.scoring import EXACT_STEP, response_tokens  # noqa: E402

SYSTEM = ("You are a careful assistant for a small team of engineers. Answer in plain English, "
          "in one or two short sentences, without lists, code or headings. When a question is "
          "about numbers, give the number first and then one sentence of explanation. When you "
          "are not sure, say so briefly instead of guessing. Never repeat the question, never "
          "apologise, and never mention that you are an assistant. Keep every answer under "
          "forty words and prefer common words over rare ones.")
CALLS = [  # (user, partial responses): each starts with its own token and stops midway
    ("How many days are there in a leap year, and why?",
     ["366 days, because February gets",
      "A leap year has 366 days: one extra day is",
      "There are 366 days in a",
      "Leap years keep the calendar in step with the"]),
    ("How many legs does a spider have?",
     ["Eight legs, unlike",
      "A spider has eight legs, while insects",
      "Spiders have 8 legs and",
      "It has eight legs, four"]),
]
REGIMES = {"exact": (EXACT_STEP, 1e-4, 4), "n_batch": (None, 0.5, 1)}
"""Regime → (the decoder's n_batch, or None for its own; the largest |Δ log p| allowed;
tokens each job generates greedily after its forced response). At n_batch the greedy
texts are not compared: a 0.2-nat difference flips a near tie (measured: " have 10"
serial, " have six legs." batched), so a job there picks one token and stops."""

Key = tuple[int, int, int]
"""(call, job index, position)."""


@dataclass
class Forced:
    """Teacher forcing through the decoder: every token of every step asks for logits; after
    each step, the log-prob of the token that follows at that position (the job's next
    prompt token, or the greedy choice past the prompt: the most likely one) is kept."""

    decoder: Decoder
    call: int = 0
    logprobs: dict[Key, float] = field(default_factory=dict)
    misplaced: list[str] = field(default_factory=list)
    """Batch entries whose token is not their job's token at that position."""
    texts: list[str] = field(default_factory=list)
    evaluated: list[list[int]] = field(default_factory=list)
    """Per call, each job's `Outcome.prompt_evaluated`..."""
    prompts: list[list[int]] = field(default_factory=list)
    """... and its prompt's length."""
    widest: int = 0
    """Most sequences in one step."""
    copies: int = 0
    """`llama_memory_seq_cp` calls (counted by `forced`)..."""
    copied: list[int] = field(default_factory=list)
    """... and per call."""

    def __post_init__(self) -> None:
        d = self.decoder
        real = d.decode_batch

        def decode_batch(cancelled: Callable[[], bool]) -> int:
            b = d.batch
            entries = []
            for j in range(b.n_tokens):
                b.logits[j] = True
                entries.append((j, d.running[b.seq_id[j][0]], int(b.pos[j]), int(b.token[j])))
            ret = real(cancelled)
            if ret == 0:
                self.widest = max(self.widest, len({e[1].seq for e in entries if e[1] is not None}))
                for entry in entries:
                    self._keep(*entry)
            return ret

        d.decode_batch = decode_batch  # type: ignore[method-assign]

    def _keep(self, j: int, run: Running | None, pos: int, token: int) -> None:
        if run is None:
            self.misplaced.append(f"call {self.call} row {j}: no running job on its sequence")
            return
        tokens = [*run.job.tokens, *run.gen]  # the token being decoded is the last one
        if pos >= len(tokens) or tokens[pos] != token:
            self.misplaced.append(f"call {self.call} job {run.index}: token {token} at position {pos}")
            return
        n = self.decoder.n_vocab
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.decoder.ctx, j), shape=(n,))
        row = row.astype(np.float64)
        top = row.max()
        lse = top + np.log(np.exp(row - top).sum())
        following = row[tokens[pos + 1]] if pos + 1 < len(tokens) else top
        self.logprobs[(self.call, run.index, pos)] = float(following - lse)

    def run(self, jobs: list[Job]) -> None:
        before = self.copies
        outcomes = self.decoder.run(jobs)
        self.copied.append(self.copies - before)
        self.texts += [o.text for o in outcomes]
        self.evaluated.append([o.prompt_evaluated for o in outcomes])
        self.prompts.append([len(job.tokens) for job in jobs])
        self.call += 1


def make_decoder(smol_model: Path, n_parallel: int) -> Decoder:
    llm = load_llama(str(smol_model), kv_cells=2048, n_parallel=n_parallel, n_gpu_layers=0,
                     n_threads=1, chat_format=None, seed=0, verbose=False)
    return Decoder(llm, n_parallel, 1024)


def prompt_of(llm: Any, user: str) -> tuple[list[int], list[str]]:
    return chat_prompt(llm, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])


def forced_jobs(llm: Any, greedy: int) -> list[list[Job]]:
    """Per call, its jobs: the chat prompt followed by the partial response."""
    calls = []
    for user, responses in CALLS:
        prompt, stop = prompt_of(llm, user)
        calls.append([Job(tokens=prompt + response_tokens(llm, r), stop=stop, max_tokens=greedy,
                          temperature=0.0, top_p=1.0, seed=0) for r in responses])
    return calls


def response_keys(llm: Any) -> set[Key]:
    """The positions both runs must decode: every one whose next token is a response token,
    but the last prompt position of a call's later jobs (that prompt is cached by then)."""
    keys = set()
    for call, (user, responses) in enumerate(CALLS):
        prompt, _ = prompt_of(llm, user)
        for index, r in enumerate(responses):
            start = len(prompt) - (1 if index == 0 else 0)
            keys |= {(call, index, pos) for pos in range(start, len(prompt) + len(response_tokens(llm, r)) - 1)}
    return keys


def forced(smol_model: Path, n_parallel: int, regime: str) -> tuple[Forced, set[Key]]:
    """Every call of CALLS teacher-forced through one fresh decoder, in order; and the
    positions both runs must have."""
    n_batch, _, greedy = REGIMES[regime]
    d = make_decoder(smol_model, n_parallel)
    rec = Forced(d)
    real_cp = llama_cpp.llama_memory_seq_cp  # as kv.py calls it (a mutation test may have set it)

    def counted(*args: Any) -> Any:
        rec.copies += 1
        return real_cp(*args)

    llama_cpp.llama_memory_seq_cp = counted
    try:
        if n_batch is not None:
            d.n_batch = n_batch  # the decoder plans steps of at most this many tokens
        for jobs in forced_jobs(d.llm, greedy):
            rec.run(jobs)
        return rec, response_keys(d.llm)
    finally:
        llama_cpp.llama_memory_seq_cp = real_cp
        d.close()
        d.llm.close()


def disagreements(serial: Forced, batched: Forced, required: set[Key], tolerance: float,
                  texts: bool) -> tuple[list[str], float]:
    """What differs between two teacher-forced runs of the same calls (and their greedy
    `texts`, if asked), and the largest |Δ log p| at the positions both decoded. A position
    one run took from its cache and the other decoded is compared through the positions
    after it; every `required` one must be in both."""
    problems = [*serial.misplaced, *batched.misplaced]
    if texts and serial.texts != batched.texts:
        problems.append(f"greedy texts differ: {serial.texts} != {batched.texts}")
    missing = sorted(k for k in required if k not in serial.logprobs or k not in batched.logprobs)
    if missing:
        problems.append(f"{len(missing)} response positions not decoded in both runs, first {missing[0]}")
    common = sorted(serial.logprobs.keys() & batched.logprobs.keys())
    diffs = [abs(serial.logprobs[k] - batched.logprobs[k]) for k in common]
    worst = max(diffs, default=0.0)
    bad = [(d, k) for d, k in zip(diffs, common, strict=True) if d > tolerance]
    if bad:
        d, k = max(bad)
        problems.append(f"{len(bad)} of {len(common)} positions differ by more than {tolerance} nats, "
                        f"worst {d:.4f} at (call, job, position) {k}")
    return problems, worst


@pytest.fixture(scope="module")
def serial(smol_model: Path) -> Iterator[Callable[[str], tuple[Forced, set[Key]]]]:
    """The reference run of each regime (n_parallel 1), made once."""
    made: dict[str, tuple[Forced, set[Key]]] = {}

    def get(regime: str) -> tuple[Forced, set[Key]]:
        if regime not in made:
            made[regime] = forced(smol_model, 1, regime)
        return made[regime]

    yield get


@pytest.mark.parametrize("regime", list(REGIMES))
def test_batched_equals_serial_with_a_shared_prefix(smol_model: Path, serial: Callable[[str], tuple[Forced, set[Key]]],
                                                    regime: str) -> None:
    _, tolerance, greedy = REGIMES[regime]
    one, required = serial(regime)
    four, _ = forced(smol_model, 4, regime)
    problems, worst = disagreements(one, four, required, tolerance, texts=greedy > 1)
    assert problems == [], problems
    print(f"{regime}: {len(one.logprobs.keys() & four.logprobs.keys())} positions, max |Δ log p| {worst:.3g}")
    # what made it a test of batching and prefix reuse
    assert one.widest == 1 and one.copies == 0
    assert four.widest == 4, four.widest  # a step carries all four sequences
    # the first call's later jobs copy a running one's prefix (or, at n_batch, where the
    # first job is over after one step, take its sequence over: KvBook.keep); the second
    # call's jobs reuse the first call's cells, in place or copied
    assert four.copied[0] >= 2 and four.copied[1] >= 1, four.copied
    for rec in (one, four):  # every job but the very first starts from cached cells
        uncached = [(call, i) for call, (done, full) in enumerate(zip(rec.evaluated, rec.prompts, strict=True))
                    for i, (n, size) in enumerate(zip(done, full, strict=True)) if n == size]
        assert uncached == [(0, 0)], (rec.evaluated, rec.prompts)


def _cp_noop(mem: Any, src: int, dst: int, p0: int, p1: int) -> None:
    """The prefix copy does nothing: the target sequence attends to none of the prefix."""


def _cp_from_one(real: Callable[..., Any]) -> Callable[..., Any]:
    """The prefix copy leaves out the first position (the rest is consistent)."""
    return lambda mem, src, dst, p0, p1: real(mem, src, dst, p0 + 1, p1)


@pytest.mark.parametrize("regime", list(REGIMES))
@pytest.mark.parametrize("mutation", ["seq_cp_noop", "seq_cp_from_position_1"])
def test_a_broken_prefix_copy_is_detected(smol_model: Path, serial: Callable[[str], tuple[Forced, set[Key]]],
                                          monkeypatch: pytest.MonkeyPatch, mutation: str, regime: str) -> None:
    """The checker of the test above reports a prefix copy that copies nothing, or all but
    the first position: so that test can fail."""
    one, required = serial(regime)  # made before the mutation
    real = llama_cpp.llama_memory_seq_cp
    monkeypatch.setattr(llama_cpp, "llama_memory_seq_cp", _cp_noop if mutation == "seq_cp_noop" else _cp_from_one(real))
    four, _ = forced(smol_model, 4, regime)
    assert four.copies >= 3  # the broken copy was used
    _, tolerance, greedy = REGIMES[regime]
    problems, worst = disagreements(one, four, required, tolerance, texts=greedy > 1)
    print(f"{mutation} at {regime}: max |Δ log p| {worst:.3g}; {problems}")
    assert any("differ by more than" in p for p in problems), problems
    assert worst > 10 * tolerance


@pytest.mark.parametrize("mutation", ["seq_cp_one_short", "keep_one_short"])
def test_a_prefix_one_position_short_at_its_end_fails_loudly(smol_model: Path, monkeypatch: pytest.MonkeyPatch,
                                                             mutation: str) -> None:
    """A prefix copy that stops one position early, or a tail drop that removes one position
    too many (`KvBook.keep`), leaves a gap before the next decoded position: llama.cpp
    refuses the step (inconsistent sequence positions) and the decoder raises, so such an
    off-by-one cannot pass silently either."""
    if mutation == "seq_cp_one_short":
        real_cp = llama_cpp.llama_memory_seq_cp
        monkeypatch.setattr(llama_cpp, "llama_memory_seq_cp",
                            lambda mem, src, dst, p0, p1: real_cp(mem, src, dst, p0, p1 - 1))
    else:
        real_rm = llama_cpp.llama_memory_seq_rm
        monkeypatch.setattr(llama_cpp, "llama_memory_seq_rm",
                            lambda mem, seq, p0, p1: real_rm(mem, seq, p0 - 1 if p0 > 0 else p0, p1))
    with pytest.raises(RuntimeError, match=r"llama_decode failed \(returned -1\)"):
        forced(smol_model, 1 if mutation == "keep_one_short" else 4, "exact")


# --- probes: the 256-token shortlist against a whole-vocabulary pass ----------------------
