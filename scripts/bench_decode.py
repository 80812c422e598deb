"""Decode speed: our batched decode loop with a lazy grammar against raw llama-cpp-python.

Run it alone, on an idle machine (`--wait-idle 120`): on 2 cores one other busy process
slows llama.cpp several-fold. In one run it measures:

1. On the embedded model (real weights, so the lazy grammar's fast path shows), one
   sequence at a time, the same thread count on both sides: raw llama-cpp-python
   (`create_chat_completion`) free text and with our grammars in its sampler chain (the
   previous design); ours (the worker process the product uses) free text and with each of
   our grammars (draft, annotation, verdict, scores).
2. The review stage on the embedded model: verdicts then scores for C candidates × a
   panel of 3 (one model plays every reviewer), sent as the scheduler sends them — each
   wave in one `chat_many` — at n_parallel 1, 2, 4, 8; wall time and judge validity.
3. (full mode) Random-weight GGUFs in real shapes (scripts/shaped_gguf.py: Qwen2.5-0.5B
   and 1.5B, Q4_K_M, 152k vocabulary): free-text decode at n_parallel 1–8, and the
   grammar's worst case (random weights: nearly every sampled token is refused, so every
   token pays a full-vocabulary grammar pass) in ms per token.
4. (full mode) Free-text decode beside one busy core (a spinning process) against idle,
   at the product's default thread count and at all cores.

Speeds in part 1 are decode speeds: tokens after the first, over the time after the first
(prompt evaluation, which our prefix sharing shortens, is left out on both sides, so the
figure shows what the grammar costs per token). Last line: `structured_ratio=<ours,
grammar-bound decode tok/s (mean of the four grammars) ÷ raw free decode tok/s>
batch_speedup=<review stage wall time at n_parallel 1 ÷ at the best n_parallel>`.
`--quick` (CI): one prompt per kind, 24-token budgets, 4 candidates × panel 1 at
n_parallel 1 and 2; no shapes, no busy core.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

from gra_local.backends.llama.threads import default_threads  # noqa: E402
from gra_local.core import prompts  # noqa: E402
from gra_local.core.backend import ChatRequest, ChatResult  # noqa: E402
from gra_local.core.config import ModelSpec  # noqa: E402
from gra_local.core.grammars import GRAMMARS, InvalidOutput, parse_json, token_budget  # noqa: E402
from gra_local.core.records import Annotation, DraftInstruction, InstructionVerdict, Scores  # noqa: E402

STEPS = {"draft": DraftInstruction, "annotation": Annotation, "verdict": InstructionVerdict,
         "scores": Scores}


def step_messages(step: str, seed: benchlib.Seed) -> list[dict[str, str]]:
    if step == "draft":
        from gra_local.core.records import Example

        ex = Example(domain="qa", keywords=["water", "boiling", "altitude"],
                     summary="How air pressure changes the boiling point of water.",
                     instruction=seed.instruction)
        return prompts.draft("qa", [ex], seed.index)
    if step == "annotation":
        return prompts.annotate(seed.instruction, seed.response, seed.index)
    if step == "verdict":
        return prompts.review_instruction(seed.instruction, seed.index)
    return prompts.review_response(seed.instruction, seed.response or "I do not know.", seed.index)


def request(messages: list[dict[str, str]], max_tokens: int, seed: int, grammar: str | None,
            temperature: float = 0.2) -> ChatRequest:
    return ChatRequest(messages=messages, temperature=temperature, top_p=0.9,
                       max_tokens=max_tokens, seed=seed, grammar=grammar)


# --- 1. one sequence: raw llama-cpp-python against ours ----------------------------------


def raw_side(model: Path, threads: int, seeds: list[benchlib.Seed], free_tokens: int) -> dict:
    """Decode tok/s (after the first token, so prompt evaluation does not count) of
    llama-cpp-python's own create_chat_completion, streamed: free, and per grammar."""
    import llama_cpp

    llm = llama_cpp.Llama(str(model), n_ctx=4096, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    out: dict[str, float] = {}
    runs = [("free", None, free_tokens)] + [(s, GRAMMARS[t], token_budget(t)) for s, t in STEPS.items()]
    for name, grammar, budget in runs:
        tokens, seconds = 0, 0.0
        for i, seed in enumerate(seeds):
            msgs = prompts.answer(seed.instruction) if grammar is None else step_messages(name, seed)
            g = llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) if grammar else None
            first = None
            n = 0
            for chunk in llm.create_chat_completion(msgs, max_tokens=budget, temperature=0.2,
                                                    top_p=0.9, seed=i, grammar=g, stream=True):
                if chunk["choices"][0]["delta"].get("content"):
                    n += 1
                    if first is None:
                        first = time.perf_counter()
            if first is not None and n > 1:
                seconds += time.perf_counter() - first
                tokens += n - 1
        out[name] = benchlib.tok_s(tokens, seconds)
    del llm
    return out


def ours_side(model: Path, threads: int, seeds: list[benchlib.Seed], free_tokens: int) -> tuple[dict, dict]:
    """Decode tok/s (after the first token) through the product's worker, one request at a
    time; validity per grammar."""
    spec = ModelSpec(name="bench", path=str(model), n_threads=threads, n_parallel=1, n_ctx=4096)
    speed: dict[str, float] = {}
    valid: dict[str, str] = {}
    with benchlib.pipeline_session(spec) as (session, _):
        runs = [("free", None, free_tokens)] + [(s, GRAMMARS[t], token_budget(t)) for s, t in STEPS.items()]
        for name, grammar, budget in runs:
            tokens, seconds, ok = 0, 0.0, 0
            for i, seed in enumerate(seeds):
                msgs = prompts.answer(seed.instruction) if grammar is None else step_messages(name, seed)
                r = session.chat(request(msgs, budget, i, grammar))
                if r.completion_tokens > 1 and r.first_token_seconds is not None:
                    seconds += r.seconds - r.first_token_seconds  # decode only, as the raw side
                    tokens += r.completion_tokens - 1
                ok += grammar is None or _valid(r, STEPS[name])
            speed[name] = benchlib.tok_s(tokens, seconds)
            if grammar is not None:
                valid[name] = benchlib.pct(ok, len(seeds))
    return speed, valid


def _valid(result: ChatResult, out_type: type) -> bool:
    try:
        parse_json(result.text, out_type, result.finish_reason)
        return True
    except InvalidOutput:
        return False


# --- 2. the review stage at several n_parallel ----------------------------------------------


def review_stage(model: Path, threads: int, seeds: list[benchlib.Seed], candidates: int,
                 panel: int, n_parallels: list[int]) -> dict[int, tuple[float, int, int]]:
    """n_parallel → (wall seconds, valid replies, replies) for verdicts then scores."""
    picked = benchlib.pick(seeds, candidates)
    out = {}
    for n in n_parallels:
        spec = ModelSpec(name="bench", path=str(model), n_threads=threads, n_parallel=n, n_ctx=4096)
        with benchlib.pipeline_session(spec) as (session, _):
            start = time.perf_counter()
            valid = total = 0
            for step in ("verdict", "scores"):
                out_type = STEPS[step]
                wave = [request(step_messages(step, s), token_budget(out_type), 1000 * c + k,
                                GRAMMARS[out_type])
                        for c, s in enumerate(picked) for k in range(panel)]
                results = session.chat_many(wave)
                valid += sum(_valid(r, out_type) for r in results)
                total += len(results)
            out[n] = (time.perf_counter() - start, valid, total)
    return out


# --- 3. realistic shapes ------------------------------------------------------------------


def shapes(names: list[str], threads: int, n_parallels: list[int], tokens: int) -> list[list]:
    from shaped_gguf import shaped_gguf

    rows = []
    for name in names:
        path = shaped_gguf(name, Path(".bench") / f"{name}-shape.Q4_K_M.gguf")
        for n in n_parallels:
            spec = ModelSpec(name="shape", path=str(path), n_threads=threads, n_parallel=n, n_ctx=2048)
            with benchlib.pipeline_session(spec) as (session, _):
                msgs = [{"role": "user", "content": "Write anything."}]
                wave = [request(msgs, tokens, i, None, temperature=0.8) for i in range(2 * n)]
                start = time.perf_counter()
                results = session.chat_many(wave)
                seconds = time.perf_counter() - start
                made = sum(r.completion_tokens for r in results)
                row = [name, n, f"{benchlib.tok_s(made, seconds):.1f}"]
                if n == 1:  # the grammar's worst case, one sequence
                    g = session.chat(request(msgs, 48, 0, GRAMMARS[Scores]))
                    f = session.chat(request(msgs, 48, 0, None, temperature=0.8))
                    row += [f"{1000 * f.seconds / max(1, f.completion_tokens):.1f}",
                            f"{1000 * g.seconds / max(1, g.completion_tokens):.1f}"]
                else:
                    row += ["", ""]
                rows.append(row)
    return rows


# --- 4. beside one busy core ----------------------------------------------------------------


def _speed(session: benchlib.Session, reqs: list[ChatRequest]) -> float:
    results = [session.chat(r) for r in reqs]
    return benchlib.tok_s(sum(r.completion_tokens for r in results), sum(r.seconds for r in results))


def busy_core(model: Path, seeds: list[benchlib.Seed], tokens: int) -> list[list]:
    """Free-text decode idle and beside one spinning process: pinned at the safe count, at
    every core, and left to the product's governor (threads.py), which picks between them."""
    rows = []
    cores = os.cpu_count() or 1
    for threads in sorted({default_threads(), cores}) + [None]:
        spec = ModelSpec(name="bench", path=str(model), n_threads=threads, n_parallel=1, n_ctx=4096)
        with benchlib.pipeline_session(spec) as (session, _):
            reqs = [request(prompts.answer(s.instruction), tokens, i, None) for i, s in enumerate(seeds)]
            _speed(session, reqs[:1])  # the governor's first look
            idle = _speed(session, reqs)
            spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                time.sleep(1.0)
                busy = _speed(session, reqs)
            finally:
                spin.kill()
                spin.wait()
        label = "auto (governor)" if threads is None else f"{threads} pinned"
        rows.append([label, f"{idle:.1f}", f"{busy:.1f}", f"{busy / idle:.2f}"])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    benchlib.add_common_args(ap, "save every figure to this file")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per kind in part 1 (4)")
    ap.add_argument("--free-tokens", type=int, default=128, help="free-text budget in part 1 (128)")
    ap.add_argument("--candidates", type=int, default=16, help="review stage candidates (16)")
    ap.add_argument("--panel", type=int, default=3, help="review stage panel (3)")
    ap.add_argument("--parallel", default="1,2,4,8", help="n_parallel values (1,2,4,8)")
    ap.add_argument("--shapes", default="qwen2.5-0.5b,qwen2.5-1.5b",
                    help="realistic shapes for part 3 ('' to skip)")
    ap.add_argument("--shape-tokens", type=int, default=64, help="tokens per sequence in part 3")
    ap.add_argument("--no-busy", action="store_true", help="skip part 4")
    ap.add_argument("--threads", type=int, default=default_threads(),
                    help=f"llama.cpp threads for parts 1–3 (default: the product's, {default_threads()})")
    args = benchlib.parse_args(ap, {"prompts": 1, "free_tokens": 24, "candidates": 4, "panel": 1,
                                    "parallel": "1,2", "shapes": "", "no_busy": True},
                               "one prompt per kind, 4 candidates at n_parallel 1 and 2, no shapes")
    benchlib.private_user_dirs()
    model = benchlib.resolve_model(args.model)
    if model is None:
        return 2
    print(benchlib.wait_idle(args.wait_idle))
    watch = benchlib.CpuWatch()
    seeds = benchlib.pick([s for s in benchlib.load_seeds() if s.response], args.prompts)
    print(f"model {model.name}, {args.threads} thread(s), {len(seeds)} prompt(s) per kind")

    raw = raw_side(model, args.threads, seeds, args.free_tokens)
    ours, valid = ours_side(model, args.threads, seeds, args.free_tokens)
    benchlib.print_table(["", "free", *STEPS], [
        ["raw llama-cpp-python decode tok/s", *(f"{raw[k]:.1f}" for k in ("free", *STEPS))],
        ["ours decode tok/s", *(f"{ours[k]:.1f}" for k in ("free", *STEPS))],
        ["ours valid", "", *(valid[k] for k in STEPS)],
    ], "l" + "r" * (1 + len(STEPS)))
    grammar_bound = sum(ours[k] for k in STEPS) / len(STEPS)
    structured_ratio = grammar_bound / raw["free"]

    parallels = [int(x) for x in args.parallel.split(",")]
    stage = review_stage(model, args.threads, benchlib.load_seeds(), args.candidates, args.panel, parallels)
    base = stage[parallels[0]][0]
    benchlib.print_table(["n_parallel", "review stage s", "speedup", "valid"], [
        [n, f"{s:.1f}", f"{base / s:.2f}", benchlib.pct(v, t)] for n, (s, v, t) in stage.items()
    ], "rrrr")
    batch_speedup = max(base / s for s, _, _ in stage.values())

    if args.shapes:
        benchlib.print_table(["shape", "n_parallel", "free tok/s", "ms/token free", "ms/token grammar"],
                             shapes(args.shapes.split(","), args.threads, parallels, args.shape_tokens),
                             "lrrrr")
    if not args.no_busy:
        benchlib.print_table(["threads", "idle tok/s", "beside a busy core", "ratio"],
                             busy_core(model, seeds, args.free_tokens), "rrrr")
    print(watch.report()[0])
    print(f"structured_ratio={structured_ratio:.3f} batch_speedup={batch_speedup:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
