"""Probe distributions equal a whole-vocabulary pass, on the real embedded SmolLM2-135M.

Probes (`Job.probe_after`, `Decoder._probe`) read a grammar's distribution from the 256
most likely tokens when that loses nothing (`sampling.Picker.distribution`);
`test_probes_equal_a_whole_vocabulary_pass` compares what they report with the softmax of
the same position's logits, from a plain `Llama`, over every token the grammar allows,
summed by text. (Batched equals serial: test_batched_equals_serial.py.)
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gra_local.core.grammars import scores_grammar, token_budget, verdict_grammar
from gra_local.core.quality.expected import SCORE_PROBES, VERDICT_PROBES
from gra_local.core.records import InstructionVerdict, Scores

pytestmark = pytest.mark.e2e
llama_cpp = pytest.importorskip("llama_cpp")

# llama_cpp is importable from here on: the backend modules import it at their top.
from gra_local.backends.llama.decode import Decoder  # noqa: E402
from gra_local.backends.llama.jobs import Job, Running  # noqa: E402
from gra_local.backends.llama.prompt import chat_prompt, load_llama  # noqa: E402
from gra_local.backends.llama.sampling import PROBE_TEXT_FLOOR  # noqa: E402
from gra_local.backends.llama.scoring import piece  # noqa: E402


def make_decoder(smol_model: Path, n_parallel: int) -> Decoder:
    llm = load_llama(str(smol_model), kv_cells=2048, n_parallel=n_parallel, n_gpu_layers=0,
                     n_threads=1, chat_format=None, seed=0, verbose=False)
    return Decoder(llm, n_parallel, 1024)


REVIEW = "You are a strict reviewer. Read the instruction and the response, then answer with JSON only."
REVIEWS = ["Instruction: What is 2+2?\nResponse: 4.\nJudge it."]
PROBE_TOLERANCE = 1e-4
"""Largest |Δ p| allowed between a probe and the reference; measured 1e-16 at scores."""
TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


@dataclass
class Probed:
    """One probed position (`Decoder._probe`): what the decoder reported, and what the
    grammar allows there over the whole vocabulary."""

    job: int
    kind: str
    """"score" (before a score's digit: only a space is allowed; the digit; what follows
    a digit), "verdict" (every probe of a verdict), or "text" (a scores reply's feedback
    key ends with the probed '":' and '": ' too: its space, then its opening quote)."""
    tokens: list[int]
    """The sequence up to the probed position, whose logits predict the next token."""
    probs: dict[str, float]
    """`Choice.probs`: by text, from the shortlist."""
    allowed: np.ndarray
    """Every token id the job's grammar allows here..."""
    texts: list[str]
    """... and what each spells."""
    logits: np.ndarray
    """The row the decoder read."""


def grammar_allows(grammar: Any, n_vocab: int) -> np.ndarray:
    """The ids a clone of `grammar` leaves finite over the whole vocabulary (applying a
    grammar sampler changes no state; the clone makes sure)."""
    clone = llama_cpp.llama_sampler_clone(grammar)
    try:
        cur = np.zeros(n_vocab, dtype=TOKEN_DATA)
        cur["id"] = np.arange(n_vocab)
        arr = llama_cpp.llama_token_data_array(data=cur.ctypes.data_as(llama_cpp.llama_token_data_p),
                                               size=n_vocab, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(clone, ctypes.byref(arr))
        n = int(arr.size)
        return np.sort(cur["id"][:n][np.isfinite(cur["logit"][:n])])
    finally:
        llama_cpp.llama_sampler_free(clone)


def probe_jobs(llm: Any) -> list[Job]:
    """A scores call and a verdict call per review, probed where the engine probes them."""
    out = []
    for seed, user in enumerate(REVIEWS):
        tokens, stop = chat_prompt(llm, [{"role": "system", "content": REVIEW}, {"role": "user", "content": user}])
        out.append(Job(tokens=tokens, stop=stop, max_tokens=token_budget(Scores), temperature=0.7, top_p=0.9,
                       seed=seed, grammar=scores_grammar(), probe_after=[p.encode() for p in SCORE_PROBES]))
        out.append(Job(tokens=tokens, stop=stop, max_tokens=token_budget(InstructionVerdict), temperature=0.7,
                       top_p=0.9, seed=seed, grammar=verdict_grammar(),
                       probe_after=[p.encode() for p in VERDICT_PROBES]))
    return out


def spelled(vocab: Any, token: int) -> str:
    return piece(vocab, token, False).decode("utf-8", errors="ignore")


def probe_all(smol_model: Path) -> tuple[list[Probed], list[list[int]]]:
    """Every probe of `probe_jobs`, each job alone in its call on one sequence (so a plain
    `Llama` replaying its steps takes the same kernels); and each job's prompt."""
    d = make_decoder(smol_model, 1)
    vocab = d.llm._model.vocab
    seen: list[Probed] = []
    real_probe = d._probe
    current = [0]

    def probe(run: Running) -> Any:
        choice = real_probe(run)
        if choice is not None:
            allowed = grammar_allows(run.grammar, d.n_vocab)
            texts = [spelled(vocab, int(t)) for t in allowed]
            if run.job.grammar == verdict_grammar():
                kind = "verdict"
            elif all(t.strip(" ,").isdigit() or not t.strip(" ,") for t in texts):
                kind = "score"
            else:
                kind = "text"
            row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(d.ctx, run.row), shape=(d.n_vocab,))
            seen.append(Probed(job=current[0], kind=kind, tokens=[*run.job.tokens, *run.gen],
                               probs=dict(choice.probs), allowed=allowed, texts=texts,
                               logits=row.astype(np.float64)))
        return choice

    d._probe = probe  # type: ignore[method-assign]
    try:
        sequences = []
        for current[0], job in enumerate(probe_jobs(d.llm)):
            (outcome,) = d.run([job])
            assert outcome.finish_reason == "stop", outcome
            sequences.append(job.tokens)
        return seen, sequences
    finally:
        d.close()
        d.llm.close()


def whole_vocabulary_rows(smol_model: Path, probes: list[Probed], prompts: list[list[int]]) -> list[np.ndarray]:
    """Each probe's logits from plain llama-cpp-python in a fresh context: `Llama.eval` of
    the job's prompt, then of its output one token at a time, as the decoder's steps (a
    probe follows at least one output token, so its row is a single token's)."""
    ref = llama_cpp.Llama(str(smol_model), n_ctx=256, n_threads=1, flash_attn=True, verbose=False)
    try:
        rows: dict[int, np.ndarray] = {}
        for job, prompt in enumerate(prompts):
            mine = {len(p.tokens) - 1: i for i, p in enumerate(probes) if p.job == job}
            if not mine:
                continue
            longest = max((p.tokens for p in probes if p.job == job), key=len)
            assert min(mine) >= len(prompt) and longest[:len(prompt)] == prompt
            ref.reset()
            ref.eval(prompt)
            for pos in range(len(prompt), len(longest)):
                ref.eval([longest[pos]])
                if pos in mine:
                    rows[mine[pos]] = np.ctypeslib.as_array(llama_cpp.llama_get_logits(ref.ctx),
                                                            shape=(ref.n_vocab(),)).astype(np.float64)
        return [rows[i] for i in range(len(probes))]
    finally:
        ref.close()


def probe_mismatches(probe: Probed, row: np.ndarray, tolerance: float) -> tuple[list[str], float]:
    """Where `probe.probs` is not the whole-vocabulary softmax of `row` over the tokens the
    grammar allows, summed by the text they spell (two ids spell each digit in SmolLM2's
    vocabulary): a reported text more than `tolerance` off, or a text left out that holds
    at least PROBE_TEXT_FLOOR + tolerance; and the largest |Δ p|."""
    logits = row[probe.allowed]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    want: dict[str, float] = {}
    for text, q in zip(probe.texts, p.tolist(), strict=True):
        if text:  # as Decoder._probe: tokens that spell nothing are left out
            want[text] = want.get(text, 0.0) + q
    problems, worst = [], 0.0
    for text in sorted(want.keys() | probe.probs.keys()):
        got, expected = probe.probs.get(text), want.get(text, 0.0)
        off = abs((got or 0.0) - expected)
        worst = max(worst, off)
        if got is None and expected >= PROBE_TEXT_FLOOR + tolerance or got is not None and off > tolerance:
            problems.append(f"job {probe.job} position {len(probe.tokens) - 1}: {text!r} "
                            f"{got if got is not None else 'left out'} against {expected:.4f}")
    return problems, worst


@pytest.fixture(scope="module")
def probes(smol_model: Path) -> tuple[list[Probed], list[np.ndarray]]:
    found, prompts = probe_all(smol_model)
    return found, whole_vocabulary_rows(smol_model, found, prompts)


@pytest.mark.parametrize("kind", [
    "score",
    # Found by this test: the shortlist alone once stood for the vocabulary whenever the
    # grammar allowed any of its 256 tokens: at the first verdict value 'f' (rank 72) was
    # the only one, reported {'f': 1.0}; over the whole vocabulary 'f' 0.80, 'fail' 0.10,
    # 'p' 0.07, 'pass' 0.02 (sampling.Picker.distribution now checks the mass left out)
    "verdict",
    "text",  # the feedback's opening quote (unused by the engine): 45 tokens allowed, 6 in the top 256
])
def test_probes_equal_a_whole_vocabulary_pass(probes: tuple[list[Probed], list[np.ndarray]], kind: str) -> None:
    found, rows = probes
    mine = [(p, row) for p, row in zip(found, rows, strict=True) if p.kind == kind]
    assert len(mine) >= {"score": 10, "verdict": 3, "text": 1}[kind], [p.kind for p in found]
    # the decoder read the row of the probed position (a plain Llama gives the same logits)
    assert max(float(np.abs(row - p.logits).max()) for p, row in mine) <= 1e-4
    problems: list[str] = []
    worst = 0.0
    for p, row in mine:
        found_problems, off = probe_mismatches(p, row, PROBE_TOLERANCE)
        problems += found_problems
        worst = max(worst, off)
    print(f"{kind}: {len(mine)} probes, max |Δ p| {worst:.3g}")
    assert problems == [], problems
