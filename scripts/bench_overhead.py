#!/usr/bin/env python3
"""Benchmark: what the pipeline's backend costs, and which judge output format to use.

On the embedded model (or --model PATH), in one run:

a. Generation overhead: the same N free-text prompts (prompts.answer on the bundled
   example seeds, fixed seeds, temperature 0.8, max_tokens 128) through the pipeline
   backend (LlamaProcessBackend -> worker process -> session.chat) and through
   llama-cpp-python in this process. Both are warmed with one untimed call, the order
   alternates per prompt, and on both sides tokens/s = sum(tokens) / sum(wall seconds seen
   by the caller), tokens being the model's own tokenizer over each side's produced text
   (benchlib.TokenCounter, the same count whichever side made the text), so the
   pipeline's figure includes IPC. The diagnosis's `worker_ratio`: the same pipeline
   tokens over the worker's own seconds (no IPC) ÷ the raw tok/s (before issue 21 it
   divided seconds, i.e. compared different amounts of text when the texts differ).
b. Judge formats on M review-B prompts (prompts.review_response on seed instruction and
   seed output), all on the in-process model so the format is the only variable:
   gbnf   - grammars.GRAMMARS[Scores], the pipeline's choice
   schema - response_format json_object with a JSON schema (six 0-10 ints, feedback
            maxLength 60)
   free   - a compact two-line format (`scores: c cl co r coh e` / `feedback: ...`),
            no grammar, parsed by regex and validated with the pydantic Scores model
   free+shot - the same with one worked example turn and a reminder at the end of the
            user message (a reply that repeats the example's scores is counted)
   A reply that hit max_tokens is invalid whatever it looks like.
c. Prefix reuse: the gbnf review calls again through the pipeline backend, reporting
   prompt tokens sent vs evaluated (ChatResult.prompt_evaluated).

The last line printed is `overhead_ratio=<pipeline tok/s / raw tok/s>` (part a's).
A benchmark, not a test: run it on an otherwise idle machine.

`--quick` (CI): one generation prompt of 16 tokens, one review-B prompt (schema and free
judges cut at 64 and 48 tokens, so they may come out truncated), one thread.
Config, cache and data dirs are private temporary ones (benchlib.private_user_dirs).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gra_local.core import grammars, prompts
from gra_local.core.backend import ChatRequest
from gra_local.core.config import ModelSpec
from gra_local.core.records import SCORE_FIELDS, Scores
from gra_local.core.seeds.scan import Seed

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below
import benchlib  # noqa: E402
from benchlib import mean, pick, std, tok_s  # noqa: E402

QUICK = {"gen_prompts": 1, "judge_prompts": 1, "gen_max_tokens": 16, "schema_max_tokens": 64,
         "free_max_tokens": 48, "n_threads": 1}
GEN = {"temperature": 0.8, "top_p": 0.95, "repeat_penalty": 1.1}  # the generator's defaults
JUDGE = {"temperature": 0.2, "top_p": 0.9, "repeat_penalty": 1.0}  # the reviewer's defaults

SCORES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **{f: {"type": "integer", "minimum": 0, "maximum": 10} for f in SCORE_FIELDS},
        "feedback": {"type": "string", "maxLength": grammars.FEEDBACK_MAX},
    },
    "required": [*SCORE_FIELDS, "feedback"],
}

FREE_SYSTEM = (
    "You are a strict reviewer of responses for a training dataset. Score the response to "
    "the instruction with integers from 0 (worst) to 10 (best) for: correctness, clarity, "
    "completeness, relevance, coherence and ethics. Reply with exactly two lines and "
    "nothing else:\n"
    "scores: c cl co r coh e\n"
    "feedback: one short sentence\n"
    "where c cl co r coh e are the six integer scores in that order."
)

# exactly six integers on the `scores:` line, nothing else on it
_FREE_SCORES = re.compile(r"^\W*scores?[*_ \t]*[:=][*_ \t]*((?:\d{1,2}[ \t,;/]+){5}\d{1,2})[ \t.]*$",
                          re.IGNORECASE | re.MULTILINE)
_FREE_FEEDBACK = re.compile(r"feedback\s*[:=]\s*(.*)", re.IGNORECASE)


def parse_free(text: str, finish_reason: str) -> Scores:
    """Parse the compact format; never turns unvalidated text into a score."""
    if finish_reason == "length":
        raise grammars.InvalidOutput("truncated (hit max_tokens)")
    m = _FREE_SCORES.search(text)
    if not m:
        raise grammars.InvalidOutput("no `scores:` line of exactly six integers")
    values = [int(v) for v in re.findall(r"\d+", m.group(1))]
    fb = _FREE_FEEDBACK.search(text[m.end():])
    try:
        return Scores(**dict(zip(SCORE_FIELDS, values, strict=True)),
                      feedback=fb.group(1).strip() if fb else "")
    except ValidationError as exc:
        first = exc.errors()[0]
        raise grammars.InvalidOutput(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


FREE_SHOT = [
    {"role": "user", "content": "Instruction:\nWhat is 2 + 3?\n\nResponse:\n2 + 3 = 5.\n"},
    {"role": "assistant", "content": "scores: 9 9 8 10 9 10\nfeedback: Correct and direct."},
]
FREE_SHOT_SCORES = (9, 9, 8, 10, 9, 10)
FREE_REMINDER = "\nReply with the two lines `scores:` and `feedback:` only."


def free_messages(instruction: str, response: str, shot: bool = False) -> list[dict[str, str]]:
    """The compact format; with `shot`, one worked example turn and a reminder at the end."""
    user = prompts.review_response(instruction, response, 0)[1]["content"]
    if not shot:
        return [{"role": "system", "content": FREE_SYSTEM}, {"role": "user", "content": user}]
    return [{"role": "system", "content": FREE_SYSTEM}, *FREE_SHOT,
            {"role": "user", "content": user + FREE_REMINDER}]


def raw_chat(llm: Any, messages: list[dict[str, str]], *, max_tokens: int, seed: int,
             sampling: dict[str, float], **extra: Any) -> tuple[dict, float]:
    start = time.perf_counter()
    out = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, seed=seed,
                                     **sampling, **extra)
    wall = time.perf_counter() - start
    choice = out["choices"][0]
    usage = out.get("usage", {})
    return {
        "text": choice["message"].get("content") or "",
        "finish_reason": choice.get("finish_reason") or "stop",
        "prompt_tokens": int(usage.get("prompt_tokens", 0)),
        "completion_tokens": int(usage.get("completion_tokens", 0)),
    }, wall


def pipe_chat(session: Any, messages: list[dict[str, str]], *, max_tokens: int, seed: int,
              sampling: dict[str, float], grammar: str | None = None) -> tuple[dict, float]:
    start = time.perf_counter()
    res = session.chat(ChatRequest(messages=messages, max_tokens=max_tokens, seed=seed,
                                   grammar=grammar, **sampling))
    wall = time.perf_counter() - start
    return res.model_dump(), wall


# --- a. generation overhead ------------------------------------------------------------


def bench_generation(llm: Any, session: Any, items: list[Seed], warm: Seed,
                     max_tokens: int, count: benchlib.TokenCounter) -> dict:
    msgs = prompts.answer(warm.instruction)
    raw_chat(llm, msgs, max_tokens=max_tokens, seed=7, sampling=GEN)
    pipe_chat(session, msgs, max_tokens=max_tokens, seed=7, sampling=GEN)
    rows = []
    for i, seed in enumerate(items):
        msgs = prompts.answer(seed.instruction)
        kw = {"max_tokens": max_tokens, "seed": 1000 + i, "sampling": GEN}
        if i % 2 == 0:
            p, p_wall = pipe_chat(session, msgs, **kw)
            r, r_wall = raw_chat(llm, msgs, **kw)
        else:
            r, r_wall = raw_chat(llm, msgs, **kw)
            p, p_wall = pipe_chat(session, msgs, **kw)
        rows.append({
            "seed_line": seed.line,
            "first": "pipeline" if i % 2 == 0 else "raw",
            "pipeline": {"wall": p_wall, "worker_seconds": p["seconds"],
                         "tokens": count(p["text"]), "completion_tokens": p["completion_tokens"],
                         "prompt_tokens": p["prompt_tokens"],
                         "prompt_evaluated": p["prompt_evaluated"],
                         "finish_reason": p["finish_reason"]},
            "raw": {"wall": r_wall, "tokens": count(r["text"]),
                    "completion_tokens": r["completion_tokens"],
                    "prompt_tokens": r["prompt_tokens"], "finish_reason": r["finish_reason"]},
            "same_text": p["text"] == r["text"],
        })
    return {"prompts": len(rows), "max_tokens": max_tokens, "sampling": GEN,
            "identical_outputs": sum(r["same_text"] for r in rows), **speeds(rows), "rows": rows}


def speeds(rows: list[dict]) -> dict:
    """Both sides' tokens/s over the same prompts (tokens: each row's `tokens`, the same
    tokenizer's count on both sides): the pipeline over the caller's wall seconds
    (`ratio`, the headline) and over the worker's own seconds (`worker_ratio`), each ÷
    the raw side's tokens over its wall seconds."""
    p_tok = sum(r["pipeline"]["tokens"] for r in rows)
    p_sec = sum(r["pipeline"]["wall"] for r in rows)
    w_sec = sum(r["pipeline"]["worker_seconds"] for r in rows)
    r_tok = sum(r["raw"]["tokens"] for r in rows)
    r_sec = sum(r["raw"]["wall"] for r in rows)
    raw = tok_s(r_tok, r_sec)
    ratio, why = benchlib.ratio(tok_s(p_tok, p_sec), raw)
    worker_ratio, _ = benchlib.ratio(tok_s(p_tok, w_sec), raw)
    return {
        "pipeline": {"tokens": p_tok, "seconds": p_sec, "tok_s": tok_s(p_tok, p_sec),
                     "worker_seconds": w_sec, "worker_tok_s": tok_s(p_tok, w_sec),
                     "ipc_seconds": p_sec - w_sec},
        "raw": {"tokens": r_tok, "seconds": r_sec, "tok_s": raw},
        "ratio": ratio, "why": why, "worker_ratio": worker_ratio,
    }


# --- b. judge formats ------------------------------------------------------------------


def judge_format(name: str, call, parse, items: list[Seed]) -> dict:
    rows = []
    for i, seed in enumerate(items):
        out, wall = call(seed, 2000 + i)
        try:
            s = parse(out["text"], out["finish_reason"])
            ok, reason, score = True, None, s.mean
            copied = tuple(getattr(s, f) for f in SCORE_FIELDS) == FREE_SHOT_SCORES
        except grammars.InvalidOutput as exc:
            ok, reason, score, copied = False, exc.reason, None, False
        rows.append({"seed_line": seed.line, "valid": ok, "copied_example": copied, "reason": reason, "mean": score,
                     "wall": wall, "completion_tokens": out["completion_tokens"],
                     "prompt_tokens": out["prompt_tokens"],
                     "prompt_evaluated": out.get("prompt_evaluated"),
                     "finish_reason": out["finish_reason"], "text": out["text"]})
    tokens = sum(r["completion_tokens"] for r in rows)
    seconds = sum(r["wall"] for r in rows)
    means = [r["mean"] for r in rows if r["valid"]]
    reasons = benchlib.tally(r["reason"] for r in rows if not r["valid"])
    return {
        "format": name, "valid": len(means), "total": len(rows),
        "tok_s": tok_s(tokens, seconds), "mean_seconds": seconds / len(rows),
        "mean_completion_tokens": tokens / len(rows),
        "score_mean": mean(means), "score_std": std(means),
        "copied_example": sum(r["copied_example"] for r in rows),
        "invalid_reasons": reasons, "rows": rows,
    }


def bench_judges(llm: Any, session: Any, items: list[Seed], schema_max_tokens: int,
                 free_max_tokens: int) -> tuple[list[dict], dict]:
    from llama_cpp import LlamaGrammar

    gbnf = grammars.GRAMMARS[Scores]
    gbnf_obj = LlamaGrammar.from_string(gbnf, verbose=False)
    budget = grammars.token_budget(Scores)

    def parse_json(text: str, finish: str) -> Scores:
        return grammars.parse_json(text, Scores, finish)

    def call_gbnf(seed: Seed, s: int):
        return raw_chat(llm, prompts.review_response(seed.instruction, seed.response or "", s),
                        max_tokens=budget, seed=s, sampling=JUDGE, grammar=gbnf_obj)

    def call_schema(seed: Seed, s: int):
        return raw_chat(llm, prompts.review_response(seed.instruction, seed.response or "", s),
                        max_tokens=schema_max_tokens, seed=s, sampling=JUDGE,
                        response_format={"type": "json_object", "schema": SCORES_SCHEMA})

    def call_free(seed: Seed, s: int):
        return raw_chat(llm, free_messages(seed.instruction, seed.response or ""),
                        max_tokens=free_max_tokens, seed=s, sampling=JUDGE)

    def call_free_shot(seed: Seed, s: int):
        return raw_chat(llm, free_messages(seed.instruction, seed.response or "", shot=True),
                        max_tokens=free_max_tokens, seed=s, sampling=JUDGE)

    def call_pipe(seed: Seed, s: int):
        return pipe_chat(session, prompts.review_response(seed.instruction, seed.response or "", s),
                         max_tokens=budget, seed=s, sampling=JUDGE, grammar=gbnf)

    results = [
        judge_format(f"gbnf (pipeline's, max_tokens {budget})", call_gbnf, parse_json, items),
        judge_format(f"schema (response_format, max_tokens {schema_max_tokens})",
                     call_schema, parse_json, items),
        judge_format(f"free (two-line, regex, max_tokens {free_max_tokens})",
                     call_free, parse_free, items),
        judge_format(f"free+shot (worked example, max_tokens {free_max_tokens})",
                     call_free_shot, parse_free, items),
    ]
    pipe = judge_format("gbnf via pipeline backend", call_pipe, parse_json, items)
    return results, pipe


def choose(results: list[dict]) -> tuple[str, str]:
    best_valid = max(r["valid"] / r["total"] for r in results)
    floor = min(0.95, best_valid)
    eligible = [r for r in results if r["valid"] / r["total"] >= floor]
    pick_ = min(eligible, key=lambda r: r["mean_seconds"])
    others = "; ".join(f"{r['format'].split()[0]} {r['valid']}/{r['total']} valid, "
                       f"{r['mean_seconds']:.2f} s/call" for r in results if r is not pick_)
    why = (f"{pick_['valid']}/{pick_['total']} valid at {pick_['mean_seconds']:.2f} s/call, "
           f"{pick_['tok_s']:.1f} tok/s, scores {pick_['score_mean']:.2f}±{pick_['score_std']:.2f}; "
           f"fastest of those with validity >= "
           f"{floor:.0%}; {others}")
    return pick_["format"].split()[0], why


# --- main --------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--gen-prompts", type=int, default=8, help="generation prompts (8)")
    ap.add_argument("-m", "--judge-prompts", type=int, default=8, help="review-B prompts (8)")
    ap.add_argument("--gen-max-tokens", type=int, default=128)
    ap.add_argument("--schema-max-tokens", type=int, default=150,
                    help="budget of the JSON-schema judge (150, as measured in issue 3)")
    ap.add_argument("--free-max-tokens", type=int, default=80)
    ap.add_argument("--n-threads", type=int, default=None,
                    help="threads for both paths (default: os.cpu_count())")
    benchlib.add_common_args(ap, "save all figures to this file")
    args = benchlib.parse_args(ap, QUICK, "1 generation prompt (16 tokens), 1 review-B "
                               "prompt (schema/free judges 64/48 tokens), 1 thread")
    benchlib.private_user_dirs()

    model = benchlib.resolve_model(args.model)
    if model is None:
        return 2
    idle = benchlib.wait_idle(args.wait_idle)
    t_start = time.perf_counter()
    watch = benchlib.CpuWatch()
    n_threads = args.n_threads or os.cpu_count()
    seeds = benchlib.load_seeds()
    gen_items = pick(seeds, args.gen_prompts)
    warm = pick(seeds, 1, offset=len(seeds) // 2 + 1)[0]
    judge_items = pick(seeds, args.judge_prompts, offset=1)

    from llama_cpp import Llama
    from llama_cpp import __version__ as llama_version

    load0 = time.perf_counter()
    llm = Llama(model_path=str(model), n_ctx=4096, n_threads=n_threads, verbose=False)
    raw_load = time.perf_counter() - load0
    spec = ModelSpec(name="bench", path=str(model), n_ctx=4096, n_threads=n_threads)
    with benchlib.pipeline_session(spec) as (session, pipe_load):
        gen = bench_generation(llm, session, gen_items, warm, args.gen_max_tokens,
                               benchlib.TokenCounter(model))
        judges, pipe_judge = bench_judges(llm, session, judge_items,
                                          args.schema_max_tokens, args.free_max_tokens)

    name, why = choose(judges)
    sent = sum(r["prompt_tokens"] for r in pipe_judge["rows"])
    evaluated = sum(r["prompt_evaluated"] or 0 for r in pipe_judge["rows"])
    total = time.perf_counter() - t_start
    load_text, load_share = watch.report()

    print(f"model: {model}  (llama-cpp-python {llama_version}, n_threads {n_threads}, "
          f"cpu_count {os.cpu_count()})")
    print(f"loads: raw {raw_load:.2f} s, pipeline worker {pipe_load:.2f} s (process start + load); "
          f"{idle}")
    print()
    print(f"a. generation: {gen['prompts']} prompts, max_tokens {gen['max_tokens']}, "
          f"temperature {GEN['temperature']}, top_p {GEN['top_p']}, "
          f"repeat_penalty {GEN['repeat_penalty']}, alternating order")
    benchlib.print_table(["path", "tokens", "seconds", "tok/s"], [
        [key, gen[key]["tokens"], f"{gen[key]['seconds']:.2f}", f"{gen[key]['tok_s']:.1f}"]
        for key in ("pipeline", "raw")], "lrrr", indent="   ")
    print(f"   pipeline: {gen['pipeline']['worker_seconds']:.2f} s inside the worker, "
          f"{gen['pipeline']['ipc_seconds']:.3f} s IPC/serialisation; identical text on "
          f"{gen['identical_outputs']}/{gen['prompts']} prompts")
    ipc_share = gen["pipeline"]["ipc_seconds"] / gen["pipeline"]["seconds"]
    worker_ratio = gen["worker_ratio"] if gen["worker_ratio"] is not None else float("nan")
    print(f"   diagnosis: IPC is {ipc_share:.1%} of the pipeline's time; inside the worker alone "
          f"the tok/s ratio would be {worker_ratio:.3f}; same sampling on both paths: "
          f"{'yes' if gen['identical_outputs'] == gen['prompts'] else 'NO'} "
          f"({gen['identical_outputs']}/{gen['prompts']} identical texts); other CPU load "
          f"{load_share:.0%}")
    print()
    print(f"b. judge formats, {args.judge_prompts} review-B prompts (seed instruction + seed "
          f"output), temperature {JUDGE['temperature']}, in-process model")
    benchlib.print_table(["format", "valid", "tok/s", "s/call", "tok/call", "mean", "std"], [
        [r["format"], f"{r['valid']}/{r['total']}", f"{r['tok_s']:.1f}", f"{r['mean_seconds']:.2f}",
         f"{r['mean_completion_tokens']:.1f}", f"{r['score_mean']:.2f}", f"{r['score_std']:.2f}"]
        for r in [*judges, pipe_judge]], "lrrrrrr", indent="   ")
    for r in [*judges, pipe_judge]:
        if r["invalid_reasons"]:
            print(f"   invalid {r['format'].split()[0]}: {benchlib.fmt_reasons(r['invalid_reasons'])}")
        if r["copied_example"]:
            print(f"   {r['format'].split()[0]}: {r['copied_example']} valid replies copied the "
                  "worked example's scores")
    print()
    print(f"c. prefix reuse, pipeline review-B calls (gbnf): prompt tokens sent {sent}, "
          f"evaluated {evaluated} ({1 - evaluated / sent:.0%} reused); per call "
          + " ".join(f"{r['prompt_evaluated']}/{r['prompt_tokens']}" for r in pipe_judge["rows"]))
    print()
    print(f"total runtime {total:.1f} s; {load_text}")
    print(f"chosen judge format: {name} ({why})")

    benchlib.save_json(args.json, {
        "model": str(model), "llama_cpp_python": llama_version, "n_threads": n_threads,
        "loads": {"raw": raw_load, "pipeline": pipe_load},
        "generation": gen, "judges": judges, "judge_pipeline": pipe_judge,
        "prefix_reuse": {"sent": sent, "evaluated": evaluated},
        "chosen_judge_format": name, "why": why, "runtime_seconds": total,
        "overhead_ratio": gen["ratio"], "other_cpu_share": load_share,
    })
    print(benchlib.figure_line("overhead_ratio", gen["ratio"], gen["why"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
