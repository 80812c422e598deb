#!/usr/bin/env python3
"""Benchmark: gra-local vs distilabel 1.5.3 (LlamaCppLLM) on the same model, seeds and budget.

`--setup` makes a separate venv (default .bench/distilabel-venv) with
distilabel[llama-cpp]==1.5.3 and requests (1.5.3 imports it undeclared), reusing the
llama-cpp-python build already in .venv (pip's cached wheel when its shared libraries
hash the same, else a wheel repacked from .venv's files): seconds, not minutes.

Then, one after the other (never at once), on the same GGUF, n_ctx, threads and seed file:
- gra-local: `gra-local run SEEDS --samples N --max-attempts M --seed S --quiet` (`--judge
  J` if given, else its default `evidence`) with a one-model registry, a fresh annotation
  cache (cold start) and dedup off (distilabel has none); it stops at N accepted samples.
- distilabel (scripts/distilabel_pipeline.py, in the other venv, HF_HUB_OFFLINE=1):
  M rows (three seed instructions each) -> TextGeneration (new instruction) ->
  TextGeneration (answer, our answer system prompt) -> UltraFeedback overall-rating with
  num_generations = panel (3). distilabel has no "until N accepted" loop, so it runs all
  M attempts. A sample is kept when the mean of its *valid* ratings is >= 4 of 5 (at
  least one valid): 4/5 is the fraction of our tau = 8 of 10, but on another rubric and
  prompt (and a linear map of 1..5 onto 0..10 would put 4 at 7.5). A rating is valid
  only when the first `Rating:` line is a bare 1-5 and the call did not hit max_tokens:
  distilabel's own parser turns the echoed placeholder `[Rating for text 1]` into a 1.

Both sides are timed the same way: whole processes, start to exit, model loads included
(ours also spends that time annotating its seed pool and judging its canaries: work the
product does to decide, so it is counted). What is compared, per side:
- judged samples: candidates that got a decision resting on valid judge output. Ours:
  accepted, rejected and unverified records (canaries are not samples) whose reason is a
  panel decision (accepted, low_score, instruction_failed, adjudicated_*, duplicate) or an
  evidence decision (evidence_accept, evidence_reject, off_topic: with the default
  `--judge evidence` a sample may never reach the panel; run.json's calibration says what
  decided (`decided_by`) and how many panel slots were not asked); not judged:
  generation_failed, review_failed, adjudication_failed, too_long, unverified. Theirs:
  rows with at least one valid rating.
- judged samples per hour of wall time, and the headline ratio ours / theirs, given only
  when both sides judged at least one sample (else `n/a` and why; nothing is smoothed).
- the share of valid judgements, over the same calls on both sides: every LLM judge call
  made (ours: review A, review B and adjudication calls, retries included, *canary calls
  included* in both the count and the valid ones; theirs: UltraFeedback calls), valid =
  a parsed verdict, score set or adjudication (ours) or a strict 1-5 rating (theirs).
  Ours' likelihood scoring calls (teacher-forced log-probs the evidence decides on) are
  judge work too, shown in their own column (scored / calls), not mixed into the LLM
  judges' share: they cannot come out malformed.
- acceptance per side, without a ratio: the two sides do NOT apply the same bar (ours:
  the cheap evidence's thresholds, set on canaries, or with `--judge panel` the panel's
  rule on six 0-10 scores and three checks; theirs: mean UltraFeedback rating >= 4 of 5).
Last line: `judged_per_hour_ratio=<ours/theirs or n/a> valid_ours=<share>
valid_theirs=<share>` (a reason in parentheses after an n/a).
A benchmark, not a test: run it on an otherwise idle machine.

`--quick` (CI): 1 sample, 1 attempt, a gra-local seed pool of 3, one thread. With the
distilabel venv present both sides run on that budget; without it (CI does not install
distilabel) only the gra-local side runs, a line says why, and the figure is
`judged_per_hour_ratio=n/a`, so the CLI run and this script's reading of it are still
exercised. Both sides run with private temporary config, cache and data dirs
(benchlib.private_user_dirs); `--setup` runs before that (pip's cache holds the wheel).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib  # scripts/, on sys.path as the script's folder
from distilabel_venv import DEFAULT_VENV, setup_venv

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


PANEL_REASONS = {"accepted", "adjudicated_accept", "adjudicated_reject", "low_score",
                 "instruction_failed", "duplicate"}
EVIDENCE_REASONS = {"evidence_accept", "evidence_reject", "off_topic"}
"""Decisions resting on valid judge output (the rest: generation_failed, review_failed,
adjudication_failed, too_long, unverified, are not judged samples)."""
JUDGE_STAGES = ("review_a", "review_b", "adjudicate")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def read_ours(out: Path) -> dict[str, Any]:
    """Our side's figures from a finished run's folder: judged samples and what decided
    them, LLM judge calls and valid judge outputs (canaries counted in both), likelihood
    scoring calls, acceptance."""
    data = json.loads((out / "run.json").read_text())
    stats, cal = data["stats"], data.get("calibration") or {}
    records = [r for name in ("accepted", "rejected", "unverified") for r in _jsonl(out / f"{name}.jsonl")]
    canaries = _jsonl(out / "canaries.jsonl")
    by_panel = sum(r.get("reason") in PANEL_REASONS for r in records)
    by_evidence = sum(r.get("reason") in EVIDENCE_REASONS for r in records)
    valid_samples = sum((rv.get("verdict") is not None) + (rv.get("scores") is not None)
                        for rec in records for rv in rec.get("reviews") or []) + sum(
                            rec.get("adjudication") is not None for rec in records)
    no_reply = sum(rv.get("verdict") is None and rv.get("scores") is None
                   for rec in records for rv in rec.get("reviews") or [])
    valid_canaries = sum((j.get("instruction_passed") is not None) + (j.get("score") is not None)
                         for c in canaries for j in c.get("judgements") or [])
    stage = stats.get("stages", {})
    truncated = sum(n for m in stats["models"].values() for reason, n in m["invalid_replies"].items()
                    if "max_tokens" in reason)
    return {
        "side": "gra-local", "accepted": data["counts"]["accepted"],
        "attempts": data["counts"]["attempts"], "records": len(records),
        "judged": by_panel + by_evidence, "judged_by_panel": by_panel,
        "judged_by_evidence": by_evidence, "canaries": len(canaries),
        "decided_by": cal.get("decided_by", ""), "panel_not_asked": cal.get("panel_not_asked", 0),
        "panel_slots_without_reply": no_reply,
        "judge": (data.get("config", {}).get("options") or {}).get("judge"),
        "loads": sum(data["loads"].values()),
        "load_seconds": sum(m["load_seconds"] for m in stats["models"].values()),
        "calls": sum(m["calls"] for m in stats["models"].values()),
        "max_tokens_hits": f"{truncated}+",  # free-text answers that hit it are not counted
        "judge_calls": sum(stage.get(st, {}).get("calls", 0) for st in JUDGE_STAGES),
        "judge_valid": valid_samples + valid_canaries, "judge_valid_canaries": valid_canaries,
        "likelihood_calls": stage.get("likelihood", {}).get("calls", 0),
        "likelihood_scored": (data.get("likelihood") or {}).get("scored", 0),
        "reasons": data["counts"]["by_reason"], "stages": data["timings"],
    }


def run_ours(args: argparse.Namespace, model: Path, work: Path) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "gra-local"
    models = work / "models.toml"
    models.write_text(f'[[models]]\nname = "smollm2-135m"\npath = {json.dumps(str(model))}\n'
                      f"n_ctx = {args.n_ctx}\nn_threads = {args.n_threads}\n")
    out = work / "ours"
    cmd = [str(exe), "run", str(args.seeds), "--out", str(out), "--models", str(models),
           "--samples", str(args.samples), "--max-attempts", str(args.max_attempts),
           "--seed", str(args.seed), "--panel", str(args.panel), "--quiet", "--no-dedup"]
    if args.seed_pool is not None:
        cmd += ["--seed-pool", str(args.seed_pool)]
    if args.judge is not None:
        cmd += ["--judge", args.judge]
    env = {**os.environ, "GRA_LOCAL_CACHE_DIR": str(work / "ours-cache")}
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if not (out / "run.json").is_file():
        raise RuntimeError(f"gra-local run failed (exit {res.returncode}): {res.stderr[-1500:]}")
    return {**read_ours(out), "wall": wall, "exit": res.returncode}


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
    result = json.loads((work / "dl-out.json").read_text())
    return {**read_theirs(result["rows"], ev, cfg["reviewer"]["max_tokens"]), "wall": wall,
            "exit": res.returncode, "pipeline_run_seconds": result["pipeline_run_seconds"]}


def read_theirs(rows: list[dict[str, Any]], events: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """distilabel's figures from its output rows and the logged loads and calls: judged
    rows (at least one valid rating), valid ratings over judge calls, acceptance."""
    calls = [e for e in events if e["event"] == "call"]
    accepted = valid = parsed_false = judgements = judged = 0
    for row in rows:
        metas = row.get("distilabel_metadata") or []
        metas = metas if isinstance(metas, list) else [metas]
        good = []
        for meta in metas:
            judgements += 1
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
        judged += bool(good)
        accepted += bool(good) and statistics.fmean(good) >= 4
    return {
        "side": "distilabel", "accepted": accepted, "attempts": len(rows), "judged": judged,
        "loads": sum(e["event"] == "load" for e in events),
        "load_seconds": sum(e["seconds"] for e in events if e["event"] == "load"),
        "calls": len(calls),
        "max_tokens_hits": str(sum(c["completion_tokens"] >= c["max_tokens"] or
                                   c["finish_reason"] == "length" for c in calls)),
        "judge_calls": sum(c["step"] == "judge" for c in calls), "judge_valid": valid,
        "judgements": judgements, "parsed_false": parsed_false,
        "step_seconds": {st: round(sum(c["seconds"] for c in calls if c["step"] == st), 1)
                         for st in ("instruction", "answer", "judge")},
    }


# --- report ------------------------------------------------------------------------------------


def per_hour(n: float, wall: float) -> float:
    return 3600 * n / wall if wall > 0 else float("nan")


def share(valid: int, calls: int) -> float:
    return valid / calls if calls else float("nan")


def compare(ours: dict[str, Any], theirs: dict[str, Any] | None, skipped: str = "") -> dict[str, Any]:
    """Per-hour figures and valid shares on each side (set in place), and the headline:
    judged samples per hour, ours / theirs, only when both judged at least one."""
    for side in (ours, theirs) if theirs is not None else (ours,):
        side["judged_per_hour"] = per_hour(side["judged"], side["wall"])
        side["accepted_per_hour"] = per_hour(side["accepted"], side["wall"])
        side["valid_share"] = share(side["judge_valid"], side["judge_calls"])
    if theirs is None:
        value, why = None, f"distilabel side skipped: {skipped}"
    else:
        value, why = benchlib.ratio(ours["judged_per_hour"], theirs["judged_per_hour"])
        zero = [f"{s['side']} judged no sample ({s['judge_valid']} of {s['judge_calls']} judge "
                "outputs valid)" for s in (ours, theirs) if not s["judged"]]
        why = "; ".join(zero) or why
    return {"judged_per_hour_ratio": value, "why": why, "valid_ours": ours["valid_share"],
            "valid_theirs": theirs["valid_share"] if theirs is not None else float("nan")}


def figure(cmp: dict[str, Any]) -> str:
    def fmt(x: float) -> str:
        return f"{x:.3f}" if math.isfinite(x) else "n/a"

    return benchlib.figure_line("judged_per_hour_ratio", cmp["judged_per_hour_ratio"], cmp["why"],
                                extra=f"valid_ours={fmt(cmp['valid_ours'])} "
                                      f"valid_theirs={fmt(cmp['valid_theirs'])}")


def row(s: dict[str, Any]) -> list[Any]:
    judged = (f"{s['judged']} ({s['judged_by_panel']} panel, {s['judged_by_evidence']} evidence)"
              if "judged_by_panel" in s else str(s["judged"]))
    likelihood = (f"{s['likelihood_scored']}/{s['likelihood_calls']}"
                  if "likelihood_calls" in s else "-")
    return [s["side"], f"{s['wall']:.1f}", s["attempts"], judged, f"{s['judged_per_hour']:.1f}",
            s["accepted"], f"{s['accepted_per_hour']:.1f}", s["loads"], f"{s['load_seconds']:.1f}",
            s["calls"], s["max_tokens_hits"], benchlib.pct(s["judge_valid"], s["judge_calls"]),
            likelihood]


def report(ours: dict[str, Any], theirs: dict[str, Any] | None, skipped: str, load_text: str,
           json_path: Path | None) -> None:
    cmp = compare(ours, theirs, skipped)
    rows = [row(ours), row(theirs) if theirs is not None else ["distilabel", *["-"] * 11, "skipped"]]
    print()
    benchlib.print_table(["side", "wall s", "attempts", "judged", "judged/h", "accepted",
                          "accepted/h", "loads", "load s", "calls", "hit max_tokens",
                          "valid LLM judge outputs", "likelihood scored"], rows, "lrrlrrrrrrrll")
    print(f"\ngra-local: judge {ours['judge'] or '-'}; decided by: {ours['decided_by'] or '-'}; "
          f"{ours['panel_not_asked']} panel slots not asked (run.json), "
          f"{ours['panel_slots_without_reply']} without a reply in the records; "
          f"{ours['canaries']} canaries judged "
          f"(their {ours['judge_valid_canaries']} valid outputs and their calls are counted); "
          f"likelihood scoring calls are judge work (the evidence decides on them)")
    print(f"gra-local: stages {ours['stages']} s (annotate = its seed pool, which distilabel "
          f"does not do); decisions {benchlib.fmt_reasons(ours['reasons'])}; its max_tokens "
          "count is structured replies only (run.json does not count free-text answers that hit it)")
    if theirs is not None:
        print(f"distilabel: model calls by step {theirs['step_seconds']} s; pipeline.run "
              f"{theirs['pipeline_run_seconds']:.1f} s of the process's {theirs['wall']:.1f} s")
        print(f"distilabel: {theirs['judgements']} judgements, {theirs['judge_valid']} valid "
              f"ratings; {theirs['parsed_false']} invalid ones distilabel's own parser reads as a "
              "number (e.g. the echoed placeholder '[Rating for text 1]' -> 1); it ran all "
              f"{theirs['attempts']} attempts (no early stop)")
        print(f"acceptance, not compared (different bars: ours {ours['judge'] or 'its default'} "
              f"judge, theirs mean rating >= 4 of 5): gra-local {ours['accepted']} of "
              f"{ours['attempts']}, distilabel {theirs['accepted']} of {theirs['attempts']}")
    else:
        print(f"distilabel side skipped: {skipped}; quick mode ran gra-local alone, so there is no ratio")
    print(load_text)
    benchlib.save_json(json_path, {"ours": ours, "theirs": theirs, "skipped": skipped or None,
                                   **cmp})
    print(figure(cmp))


QUICK = {"samples": 1, "max_attempts": 1, "seed_pool": 3, "n_threads": 1}


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
    ap.add_argument("--judge", choices=("evidence", "panel"),
                    help="gra-local's --judge (default: gra-local's own, evidence)")
    ap.add_argument("--keep", type=Path, help="keep both runs' outputs in this folder")
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
    report(ours, theirs, skipped or "", load_text, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
