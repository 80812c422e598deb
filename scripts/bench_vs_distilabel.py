#!/usr/bin/env python3
"""Benchmark: gra-local vs distilabel 1.5.3 (LlamaCppLLM) on the same model, seeds and budget.

`--setup` makes a separate venv (default .bench/distilabel-venv) with
distilabel[llama-cpp]==1.5.3 and requests (1.5.3 imports it without declaring it). It
does not build llama-cpp-python again: it installs the wheel of the build already in
.venv (pip's cached wheel when its shared libraries hash the same as the installed ones,
else a wheel repacked from .venv's installed files), so the setup takes seconds, not
minutes.

Then, one after the other (never at once), on the same GGUF, n_ctx, threads and seed file:
- gra-local: `gra-local run SEEDS --samples N --max-attempts M --seed S --quiet` with a
  one-model registry, a fresh annotation cache (cold start) and dedup off (distilabel has
  none); it stops as soon as N samples are accepted.
- distilabel (scripts/distilabel_pipeline.py, in the other venv, HF_HUB_OFFLINE=1):
  M rows (three seed instructions each) -> TextGeneration (new instruction) ->
  TextGeneration (answer, our answer system prompt) -> UltraFeedback overall-rating with
  num_generations = panel (3). distilabel has no "until N accepted" loop, so it runs all
  M attempts. A sample is kept when the mean of its *valid* ratings is >= 4 of 5 (at
  least one valid): 4/5 is the same fraction as our tau = 8 of 10 (a linear map of 1..5
  onto 0..10 would put 4 at 7.5, slightly more lenient). A rating is valid only when the
  first `Rating:` line is a bare 1-5 and the call did not hit max_tokens: distilabel's
  own parser turns the echoed placeholder `[Rating for text 1]` into a 1.

Both sides are timed as whole processes (start to exit, model loads included). Prints a
table and, last, exactly `accepted_per_hour_ratio=<ours/theirs>`. If either side
accepted nothing, both counts get +0.5 (so the ratio stays finite and still reflects the
time each side took; with both at 0 it is theirs' wall time / ours), and a note says so.
A benchmark, not a test: run it on an otherwise idle machine.

`--quick` (CI): 1 sample, 1 attempt, a gra-local seed pool of 3, one thread. With the
distilabel venv present both sides run on that budget; without it (CI does not install
distilabel: a second venv and its dependencies for a smoke test) only the gra-local side
runs, a line says why the other is skipped, and the figure is
`accepted_per_hour_ratio=nan` (no ratio without a second side), so the CLI run, its
run.json and this script's reading of it are still exercised. Both sides run with
private temporary config, cache and data dirs (benchlib.private_user_dirs); `--setup`
runs before that, so pip still finds its cached llama-cpp-python wheel.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from distilabel_venv import DEFAULT_VENV, setup_venv  # scripts/, on sys.path as the script's folder

# --- the two runs ----------------------------------------------------------------------------


def _judged(cfg: dict[str, Any]) -> dict[str, Any]:
    """Sampling of each side's roles, from gra-local's defaults (so both use the same)."""
    from gra_local.core.config import DEFAULT_SAMPLING, Role
    from gra_local.core.prompts import ANSWER_SYSTEM

    def role(r: Role, max_tokens: int | None = None) -> dict[str, Any]:
        s = DEFAULT_SAMPLING[r]
        return {"temperature": s.temperature, "top_p": s.top_p,
                "repeat_penalty": s.repeat_penalty, "max_tokens": max_tokens or s.max_tokens}

    return {**cfg, "generator": role(Role.GENERATOR), "answer_system": ANSWER_SYSTEM,
            "reviewer": role(Role.REVIEWER, cfg["judge_max_tokens"])}


def run_ours(args: argparse.Namespace, model: Path, work: Path) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "gra-local"
    models = work / "models.toml"
    models.write_text(f'[[models]]\nname = "smollm2-135m"\npath = {json.dumps(str(model))}\n'
                      f"n_ctx = {args.n_ctx}\nn_threads = {args.n_threads}\n")
    out = work / "ours"
    cmd = [str(exe), "run", str(args.seeds), "--out", str(out), "--models", str(models),
           "--samples", str(args.samples), "--max-attempts", str(args.max_attempts),
           "--seed", str(args.seed), "--panel", str(args.panel), "--quiet"]
    helptext = subprocess.run([str(exe), "run", "--help"], capture_output=True, text=True,
                              check=False).stdout
    if "--no-dedup" in helptext:
        cmd.append("--no-dedup")
    if args.seed_pool is not None:
        cmd += ["--seed-pool", str(args.seed_pool)]
    env = {**os.environ, "GRA_LOCAL_CACHE_DIR": str(work / "ours-cache")}
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if not (out / "run.json").is_file():
        raise RuntimeError(f"gra-local run failed (exit {res.returncode}): {res.stderr[-1500:]}")
    data = json.loads((out / "run.json").read_text())
    stats = data["stats"]
    records = [json.loads(ln) for name in ("accepted.jsonl", "rejected.jsonl")
               if (out / name).is_file() for ln in (out / name).read_text().splitlines() if ln.strip()]
    judge_stages = ("review_a", "review_b", "adjudicate")
    valid = sum((rv.get("verdict") is not None) + (rv.get("scores") is not None)
                for rec in records for rv in rec["reviews"]) + sum(
                    rec.get("adjudication") is not None for rec in records)
    truncated = sum(n for m in stats["models"].values() for reason, n in m["invalid_replies"].items()
                    if "max_tokens" in reason)
    return {
        "side": "gra-local", "wall": wall, "exit": res.returncode,
        "accepted": data["counts"]["accepted"], "attempts": data["counts"]["attempts"],
        "loads": sum(data["loads"].values()),
        "load_seconds": sum(m["load_seconds"] for m in stats["models"].values()),
        "calls": sum(m["calls"] for m in stats["models"].values()),
        "max_tokens_hits": f"{truncated}+",  # free-text answers that hit it are not counted
        "judge_calls": sum(stats["stages"].get(st, {}).get("calls", 0) for st in judge_stages),
        "judge_valid": valid, "reasons": data["counts"]["by_reason"], "stages": data["timings"],
    }


_RATING = re.compile(r"^[#*\s]*Rating\s*:\s*\**\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)


def strict_rating(raw: str | None, hit_limit: bool) -> int | None:
    """The first `Rating:` line as a bare 1..5 (an optional `/5`), else None."""
    if raw is None or hit_limit:
        return None
    m = _RATING.search(raw)
    if not m:
        return None
    v = re.fullmatch(r"\[?([1-5])\]?(?:\s*/\s*5)?\.?\**", m.group(1))
    return int(v.group(1)) if v else None


def run_theirs(args: argparse.Namespace, model: Path, seeds: list[str], work: Path) -> dict[str, Any]:
    py = args.venv / "bin" / "python"
    events = work / "distilabel-events.jsonl"
    cfg = _judged({"model": str(model), "n_ctx": args.n_ctx, "n_threads": args.n_threads,
                   "seed": args.seed, "seeds": seeds, "attempts": args.max_attempts,
                   "examples_per_prompt": 3, "panel": args.panel,
                   "judge_max_tokens": args.judge_max_tokens,
                   "cache_dir": str(work / "distilabel-cache")})
    (work / "dl-config.json").write_text(json.dumps(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BENCH_EVENTS": str(events),
           "DISTILABEL_CACHE_DIR": str(work / "distilabel-cache")}
    env.pop("VIRTUAL_ENV", None)
    log = work / "distilabel.log"
    start = time.perf_counter()
    with log.open("w") as f:
        res = subprocess.run([str(py), str(Path(__file__).with_name("distilabel_pipeline.py")),
                              str(work / "dl-config.json"), str(work / "dl-out.json")],
                             env=env, stdout=f, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    if res.returncode != 0 or not (work / "dl-out.json").is_file():
        raise RuntimeError(f"distilabel pipeline failed (exit {res.returncode}): "
                           f"{log.read_text()[-1500:]}")
    ev = [json.loads(ln) for ln in events.read_text().splitlines()] if events.is_file() else []
    calls = [e for e in ev if e["event"] == "call"]
    rows = json.loads((work / "dl-out.json").read_text())["rows"]
    limit = cfg["reviewer"]["max_tokens"]
    accepted = valid = parsed_false = judged = 0
    for row in rows:
        metas = row.get("distilabel_metadata") or []
        metas = metas if isinstance(metas, list) else [metas]
        good = []
        for meta in metas:
            judged += 1
            raw = (meta or {}).get("raw_output_judge")
            tokens = ((meta or {}).get("statistics_judge") or {}).get("output_tokens") or 0
            tokens = tokens[0] if isinstance(tokens, list) else tokens  # int in 1.5.3
            r = strict_rating(raw, hit_limit=tokens >= limit)
            if r is not None:
                good.append(r)
            elif raw and re.search(r"Rating: (.+?)\nRationale: ", raw) and re.search(
                    r"Rating: [^\n]*\b\d+\b", raw):
                parsed_false += 1  # distilabel's regex would read a number out of it
        valid += len(good)
        accepted += bool(good) and statistics.fmean(good) >= 4
    return {
        "side": "distilabel", "wall": wall, "exit": res.returncode, "accepted": accepted,
        "attempts": len(rows), "loads": sum(e["event"] == "load" for e in ev),
        "load_seconds": sum(e["seconds"] for e in ev if e["event"] == "load"),
        "calls": len(calls),
        "max_tokens_hits": str(sum(c["completion_tokens"] >= c["max_tokens"] or
                                   c["finish_reason"] == "length" for c in calls)),
        "judge_calls": sum(c["step"] == "judge" for c in calls), "judge_valid": valid,
        "judged": judged, "parsed_false": parsed_false,
        "pipeline_run_seconds": json.loads((work / "dl-out.json").read_text())["pipeline_run_seconds"],
        "step_seconds": {st: round(sum(c["seconds"] for c in calls if c["step"] == st), 1)
                         for st in ("instruction", "answer", "judge")},
    }


# --- report ------------------------------------------------------------------------------------


def per_hour(accepted: float, wall: float) -> float:
    return 3600 * accepted / wall if wall > 0 else float("nan")


QUICK = {"samples": 1, "max_attempts": 1, "seed_pool": 3, "n_threads": 1}


def report_ours_only(ours: dict[str, Any], why: str, load_text: str, json_path: Path | None) -> int:
    """Quick mode without distilabel: gra-local's row, why the other side is missing, and
    the figure line marked as skipped."""
    import benchlib

    ours["per_hour"] = per_hour(ours["accepted"], ours["wall"])
    print()
    benchlib.print_table(
        ["side", "wall s", "attempts", "accepted", "accepted/h", "loads", "load s", "calls",
         "hit max_tokens", "valid judge outputs"],
        [[ours["side"], f"{ours['wall']:.1f}", ours["attempts"], ours["accepted"],
          f"{ours['per_hour']:.1f}", ours["loads"], f"{ours['load_seconds']:.1f}", ours["calls"],
          ours["max_tokens_hits"], f"{ours['judge_valid']}/{ours['judge_calls']}"],
         ["distilabel", "-", "-", "-", "-", "-", "-", "-", "-", "skipped"]], "lrrrrrrrrl")
    print(f"\ngra-local: stages {ours['stages']} s; decisions {benchlib.fmt_reasons(ours['reasons'])}")
    print(load_text)
    print(f"distilabel side skipped: {why}; quick mode ran gra-local alone, so there is no ratio")
    benchlib.save_json(json_path, {"ours": ours, "theirs": None, "skipped": why,
                                   "accepted_per_hour_ratio": None})
    print("accepted_per_hour_ratio=nan  (distilabel side skipped)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", action="store_true",
                    help="create the distilabel venv first (reusing .venv's llama-cpp-python)")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="distilabel venv (%(default)s)")
    ap.add_argument("--seeds", type=Path, help="seed file (default: the bundled example seeds)")
    ap.add_argument("--samples", type=int, default=4, help="accepted samples wanted (4)")
    ap.add_argument("--max-attempts", type=int, help="candidates at most (default 4×samples)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--panel", type=int, default=3, help="judges per sample (3)")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--n-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--judge-max-tokens", type=int,
                    help="UltraFeedback max_new_tokens (default: our reviewer's max_tokens)")
    ap.add_argument("--seed-pool", type=int,
                    help="gra-local's annotated seed pool (default: gra-local's own)")
    ap.add_argument("--keep", type=Path, help="keep both runs' outputs in this folder")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchlib

    benchlib.add_common_args(ap, "save the figures to this file")
    args = benchlib.parse_args(ap, QUICK, "1 sample, 1 attempt, seed pool 3, 1 thread; "
                               "gra-local alone when the distilabel venv is missing")
    py = args.venv / "bin" / "python"
    skipped = None  # why the distilabel side does not run (quick mode only)
    if args.setup:
        why = setup_venv(args.venv)
        if why:
            print(f"distilabel cannot be installed here: {why}", file=sys.stderr)
            return 1
    elif not py.exists():
        if not args.quick:
            print(f"no distilabel venv at {args.venv}: pass --setup to create it", file=sys.stderr)
            return 2
        skipped = f"no distilabel venv at {args.venv} (`--setup` creates it)"
    benchlib.private_user_dirs()  # after --setup: pip's own cache holds the wheel it reuses

    from gra_local.core.config import DEFAULT_SAMPLING, Role
    from gra_local.core.seeds.scan import Seed, iter_seeds

    model = benchlib.resolve_model(args.model)
    if model is None:
        return 2
    args.seeds = (args.seeds or benchlib.SEEDS_FILE).resolve()
    args.max_attempts = args.max_attempts or 4 * args.samples
    args.judge_max_tokens = args.judge_max_tokens or DEFAULT_SAMPLING[Role.REVIEWER].max_tokens
    seeds = [s.instruction for s in iter_seeds(args.seeds) if isinstance(s, Seed)]
    print(f"model {model.name}, n_ctx {args.n_ctx}, {args.n_threads} threads, {len(seeds)} seeds "
          f"from {args.seeds.name}, samples {args.samples}, max attempts {args.max_attempts}, "
          f"seed {args.seed}, panel {args.panel}; {benchlib.wait_idle(args.wait_idle)}")
    watch = benchlib.CpuWatch()
    with tempfile.TemporaryDirectory(prefix="gra-bench-vs-dl-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            ours = run_ours(args, model, work)
            theirs = None if skipped else run_theirs(args, model, seeds, work)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
    load_text, _share = watch.report()
    if theirs is None:
        return report_ours_only(ours, skipped or "", load_text, args.json)

    smooth = 0.5 if 0 in (ours["accepted"], theirs["accepted"]) else 0.0
    for side in (ours, theirs):
        side["per_hour"] = per_hour(side["accepted"], side["wall"])
        side["per_hour_used"] = per_hour(side["accepted"] + smooth, side["wall"])
    ratio = ours["per_hour_used"] / theirs["per_hour_used"]
    print()
    benchlib.print_table(
        ["side", "wall s", "attempts", "accepted", "accepted/h", "loads", "load s", "calls",
         "hit max_tokens", "valid judge outputs"],
        [[s["side"], f"{s['wall']:.1f}", s["attempts"], s["accepted"], f"{s['per_hour']:.1f}",
          s["loads"], f"{s['load_seconds']:.1f}", s["calls"], s["max_tokens_hits"],
          f"{s['judge_valid']}/{s['judge_calls']}"] for s in (ours, theirs)], "lrrrrrrrrl")
    print(f"\ngra-local: stages {ours['stages']} s (annotate = its seed pool, which distilabel "
          f"does not do); decisions {benchlib.fmt_reasons(ours['reasons'])}; its max_tokens "
          "count is structured replies only (run.json does not count free-text answers that hit it)")
    print(f"distilabel: model calls by step {theirs['step_seconds']} s; pipeline.run "
          f"{theirs['pipeline_run_seconds']:.1f} s of the process's {theirs['wall']:.1f} s")
    print(f"distilabel: {theirs['judged']} judgements, {theirs['judge_valid']} valid ratings; "
          f"{theirs['parsed_false']} invalid ones distilabel's own parser reads as a number "
          f"(e.g. the echoed placeholder '[Rating for text 1]' -> 1); kept when mean valid "
          f"rating >= 4 of 5 (= our tau 8 of 10); it ran all {theirs['attempts']} attempts "
          "(no early stop)")
    print(load_text)
    if smooth:
        print("note: a side accepted 0 samples, so both accepted counts get +0.5 in the ratio "
              f"(ours {ours['per_hour_used']:.1f}/h vs theirs {theirs['per_hour_used']:.1f}/h): "
              "inf or nan would say nothing, and the smoothed ratio still weighs the time spent")
    benchlib.save_json(args.json, {"ours": ours, "theirs": theirs, "smoothing": smooth,
                                   "accepted_per_hour_ratio": ratio})
    print(f"accepted_per_hour_ratio={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
