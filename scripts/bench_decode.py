"""Decode speed: our batched decode loop with a lazy grammar against raw llama-cpp-python.

Run it alone, on an idle machine (`--wait-idle 120`): on 2 cores one other busy process
slows llama.cpp several-fold. In one run it measures:

1. On the embedded model (real weights, so the lazy grammar's fast path shows), one
   sequence at a time, the same thread count on both sides, the *same requests* on both
   (greedy, fixed budgets; prompts.answer for free text, our prompts and grammars for
   draft, annotation, verdict, scores): raw llama-cpp-python in this process
   (`create_chat_completion`, not streamed, each grammar parsed once: the previous design)
   against ours (the worker process the product uses, `session.chat`). The two sides'
   calls are interleaved, in alternating order, after one untimed call each.
2. The review stage on the embedded model: verdicts then scores for C candidates × a
   panel (one model plays every reviewer), greedy with fixed budgets and seeds, sent as
   the scheduler sends them — each wave in one `chat_many` — at n_parallel 1, 2, 4, 8,
   each setting run --repeats times (3) on a fresh worker, the settings' order alternating
   round by round; tokens/s per run and judge validity.
3. (full mode) Random-weight GGUFs in real shapes (scripts/shaped_gguf.py: Qwen2.5-0.5B
   and 1.5B, Q4_K_M, 152k vocabulary): free-text decode at n_parallel 1–8, and the
   grammar's worst case (random weights: nearly every sampled token is refused, so every
   token pays a full-vocabulary grammar pass) in ms per token.
4. (full mode) Free-text decode beside one busy core (a spinning process) against idle,
   at the product's default thread count and at all cores.

Every speed in parts 1 and 2 is counted the same way on every side: tokens = the model's
own tokenizer over the produced text (benchlib.TokenCounter, not each engine's own
count), over the caller's wall seconds around the call (prompt evaluation included on
both sides, and for ours the IPC to its worker: the time the pipeline actually waits).
Greedy decoding makes the two sides' texts the same where their logits agree (the table
says on how many calls). Last line:
`structured_ratio=<ours ÷ raw tok/s over the same grammar-bound calls (the four grammars
pooled: their tokens over their seconds)> batch_speedup=<the best n_parallel's median
tok/s ÷ n_parallel 1's median tok/s>`. The worker takes no ignore-EOS option, so the
review stage's amount of text is fixed by greedy decoding of the same requests, not
forced; the table lists each run's tokens (a note says when they differ by over 5%).
(Before issue 21, structured_ratio was ours' grammar-bound decode ÷ raw *free* decode,
different prompts and texts, streamed chunks against completion_tokens, two clocks; and
batch_speedup the best single run's wall time ratio.)
`--quick` (CI): one prompt per kind, 24-token free budget, 2 candidates × panel 1 at
n_parallel 1 and 2, one run each; no shapes, no busy core.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

from gra_local.backends.llama.threads import default_threads  # noqa: E402
from gra_local.core import prompts  # noqa: E402
from gra_local.core.backend import ChatRequest  # noqa: E402
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


def requests_for(kind: str, seeds: list[benchlib.Seed], free_tokens: int) -> list[ChatRequest]:
    """The same greedy requests for both sides: free text (prompts.answer) or one grammar."""
    if kind == "free":
        return [request(prompts.answer(s.instruction), free_tokens, i, None, 0.0)
                for i, s in enumerate(seeds)]
    out_type = STEPS[kind]
    return [request(step_messages(kind, s), token_budget(out_type), i, GRAMMARS[out_type], 0.0)
            for i, s in enumerate(seeds)]


def raw_call(llm: Any, req: ChatRequest, grammar: Any) -> tuple[str, str, float]:
    """One non-streamed create_chat_completion: text, finish reason, the caller's wall
    seconds around it (prompt evaluation included)."""
    start = time.perf_counter()
    out = llm.create_chat_completion(req.messages, max_tokens=req.max_tokens,
                                     temperature=req.temperature, top_p=req.top_p,
                                     repeat_penalty=req.repeat_penalty, seed=req.seed, grammar=grammar)
    seconds = time.perf_counter() - start
    choice = out["choices"][0]
    return choice["message"].get("content") or "", choice.get("finish_reason") or "stop", seconds


def ours_call(session: benchlib.Session, req: ChatRequest) -> tuple[str, str, float]:
    """One session.chat through the worker: text, finish reason, the caller's wall seconds
    around it (prompt evaluation and IPC included)."""
    start = time.perf_counter()
    r = session.chat(req)
    return r.text, r.finish_reason, time.perf_counter() - start


def one_sequence(model: Path, threads: int, seeds: list[benchlib.Seed], free_tokens: int,
                 count: benchlib.TokenCounter, n_ctx: int = 4096) -> dict[str, dict[str, Any]]:
    """Per kind and side: tokens (`count` over the produced texts), wall seconds, valid
    replies; the two sides' calls interleaved, their order alternating, each side warmed by
    one untimed call. A request either side did not decode (too_long, error) counts on
    neither (`left_out`)."""
    import llama_cpp

    llm = llama_cpp.Llama(str(model), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    spec = ModelSpec(name="bench", path=str(model), n_threads=threads, n_parallel=1, n_ctx=n_ctx)
    out: dict[str, dict[str, Any]] = {}
    with benchlib.pipeline_session(spec) as (session, _):
        warm = requests_for("free", seeds[:1], 8)[0]
        raw_call(llm, warm, None)
        ours_call(session, warm)
        for kind in ("free", *STEPS):
            reqs = requests_for(kind, seeds, free_tokens)
            grammar = llama_cpp.LlamaGrammar.from_string(reqs[0].grammar, verbose=False) \
                if reqs[0].grammar else None  # parsed once, as the worker parses each grammar once
            fig: dict[str, Any] = {side: {"tokens": 0, "seconds": 0.0, "valid": 0, "texts": []}
                                   for side in ("raw", "ours")}
            fig["left_out"] = 0
            for i, req in enumerate(reqs):
                got = {side: raw_call(llm, req, grammar) if side == "raw" else ours_call(session, req)
                       for side in (("raw", "ours") if i % 2 == 0 else ("ours", "raw"))}
                if any(finish not in ("stop", "length") for _, finish, _ in got.values()):
                    fig["left_out"] += 1  # e.g. too_long on one side: not the same work
                    continue
                for side, (text, finish, seconds) in got.items():
                    f = fig[side]
                    f["tokens"] += count(text)
                    f["seconds"] += seconds
                    f["valid"] += kind == "free" or _valid(text, finish, STEPS[kind])
                    f["texts"].append(text)
            out[kind] = fig
    llm.close()
    return out


def _valid(text: str, finish_reason: str, out_type: type) -> bool:
    try:
        parse_json(text, out_type, finish_reason)
        return True
    except InvalidOutput:
        return False


def pooled(fig: dict[str, dict[str, Any]], kinds: tuple[str, ...], side: str) -> float:
    """tokens / seconds of `side` summed over `kinds`."""
    return benchlib.tok_s(sum(fig[k][side]["tokens"] for k in kinds),
                          sum(fig[k][side]["seconds"] for k in kinds))


# --- 2. the review stage at several n_parallel ----------------------------------------------


def review_run(model: Path, threads: int, n: int, waves: list[list[ChatRequest]],
               count: benchlib.TokenCounter) -> dict[str, Any]:
    """One review stage on a fresh worker (load untimed): wall seconds of its chat_many
    waves, tokens (`count` over the replies), valid replies."""
    spec = ModelSpec(name="bench", path=str(model), n_threads=threads, n_parallel=n, n_ctx=4096)
    with benchlib.pipeline_session(spec) as (session, _):
        start = time.perf_counter()
        results = [(step, session.chat_many(wave)) for step, wave in zip(("verdict", "scores"), waves,
                                                                          strict=True)]
        seconds = time.perf_counter() - start
    replies = [(step, r) for step, rs in results for r in rs]
    return {"seconds": seconds, "tokens": sum(count(r.text) for _, r in replies),
            "valid": sum(_valid(r.text, r.finish_reason, STEPS[step]) for step, r in replies),
            "total": len(replies)}


def review_stage(model: Path, threads: int, seeds: list[benchlib.Seed], candidates: int,
                 panel: int, n_parallels: list[int], repeats: int,
                 count: benchlib.TokenCounter) -> dict[int, list[dict[str, Any]]]:
    """n_parallel → its runs: verdicts then scores for C candidates × a panel, greedy with
    fixed budgets, each wave in one chat_many; `repeats` rounds, the settings' order
    alternating round by round."""
    picked = benchlib.pick(seeds, candidates)
    waves = [[request(step_messages(step, s), token_budget(STEPS[step]), 1000 * c + k,
                      GRAMMARS[STEPS[step]], 0.0)
              for c, s in enumerate(picked) for k in range(panel)] for step in ("verdict", "scores")]
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in n_parallels}
    for r in range(repeats):
        for n in n_parallels if r % 2 == 0 else n_parallels[::-1]:
            runs[n].append(review_run(model, threads, n, waves, count))
    return runs


def batch_speedup(runs: dict[int, list[dict[str, Any]]]) -> tuple[float, int, dict[int, float]]:
    """Median tokens/s per setting; the best median ÷ the first setting's median, and which
    setting that is."""
    medians = {n: benchlib.median([benchlib.tok_s(r["tokens"], r["seconds"]) for r in rs])
               for n, rs in runs.items()}
    base = medians[next(iter(runs))]
    best = max(medians, key=lambda n: medians[n])
    return medians[best] / base, best, medians


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
    ap.add_argument("--repeats", type=int, default=3, help="review stage runs per n_parallel (3)")
    ap.add_argument("--shapes", default="qwen2.5-0.5b,qwen2.5-1.5b",
                    help="realistic shapes for part 3 ('' to skip)")
    ap.add_argument("--shape-tokens", type=int, default=64, help="tokens per sequence in part 3")
    ap.add_argument("--no-busy", action="store_true", help="skip part 4")
    ap.add_argument("--threads", type=int, default=default_threads(),
                    help=f"llama.cpp threads for parts 1–3 (default: the product's, {default_threads()})")
    args = benchlib.parse_args(ap, {"prompts": 1, "free_tokens": 24, "candidates": 2, "panel": 1,
                                    "parallel": "1,2", "shapes": "", "no_busy": True, "repeats": 1},
                               "one prompt per kind, 2 candidates at n_parallel 1 and 2 (one run each), no shapes")
    benchlib.private_user_dirs()
    model = benchlib.resolve_model(args.model)
    if model is None:
        return 2
    print(benchlib.wait_idle(args.wait_idle))
    watch = benchlib.CpuWatch()
    seeds = benchlib.pick([s for s in benchlib.load_seeds() if s.response], args.prompts)
    print(f"model {model.name}, {args.threads} thread(s), {len(seeds)} prompt(s) per kind")

    count = benchlib.TokenCounter(model)
    fig = one_sequence(model, args.threads, seeds, args.free_tokens, count)
    cells = {side: [f"{pooled(fig, (k,), side):.1f}" for k in ("free", *STEPS)] for side in ("raw", "ours")}
    benchlib.print_table(["tok/s (tokens ÷ wall s of the calls)", "free", *STEPS], [
        ["raw llama-cpp-python", *cells["raw"]], ["ours (worker, IPC included)", *cells["ours"]],
        ["ours ÷ raw", *(f"{pooled(fig, (k,), 'ours') / pooled(fig, (k,), 'raw'):.2f}"
                         for k in ("free", *STEPS))],
        ["valid raw / ours", "", *(f"{fig[k]['raw']['valid']}/{fig[k]['ours']['valid']} of "
                                   f"{len(fig[k]['raw']['texts'])}" for k in STEPS)],
        ["same text", *(f"{sum(a == b for a, b in zip(fig[k]['raw']['texts'], fig[k]['ours']['texts'], strict=True))}"
                        f"/{len(fig[k]['raw']['texts'])}" for k in ("free", *STEPS))],
        ["left out (not decoded by a side)", *(str(fig[k]["left_out"]) for k in ("free", *STEPS))],
    ], "l" + "r" * (1 + len(STEPS)))
    structured, why = benchlib.ratio(pooled(fig, tuple(STEPS), "ours"), pooled(fig, tuple(STEPS), "raw"))

    parallels = [int(x) for x in args.parallel.split(",")]
    runs = review_stage(model, args.threads, benchlib.load_seeds(), args.candidates, args.panel,
                        parallels, args.repeats, count)
    speedup, best, medians = batch_speedup(runs)
    base = medians[parallels[0]]
    benchlib.print_table(["n_parallel", "median s", "median tok/s", "tokens per run", "speedup", "valid"], [
        [n, f"{benchlib.median([r['seconds'] for r in rs]):.2f}", f"{medians[n]:.1f}",
         "/".join(str(r["tokens"]) for r in rs), f"{medians[n] / base:.2f}",
         benchlib.pct(sum(r["valid"] for r in rs), sum(r["total"] for r in rs))]
        for n, rs in runs.items()], "rrrrrr")
    made = {r["tokens"] for rs in runs.values() for r in rs}
    if max(made) > 1.05 * min(made):
        print(f"note: the runs produced {min(made)}..{max(made)} tokens (greedy, yet batching "
              "changed some replies): tok/s still compares them, not wall time")
    print(f"best n_parallel {best}")

    if args.shapes:
        benchlib.print_table(["shape", "n_parallel", "free tok/s", "ms/token free", "ms/token grammar"],
                             shapes(args.shapes.split(","), args.threads, parallels, args.shape_tokens),
                             "lrrrr")
    if not args.no_busy:
        benchlib.print_table(["threads", "idle tok/s", "beside a busy core", "ratio"],
                             busy_core(model, seeds, args.free_tokens), "rrrr")
    print(watch.report()[0])
    print(benchlib.figure_line("structured_ratio", structured, why,
                               extra=f"batch_speedup={speedup:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
