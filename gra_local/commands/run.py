"""`gra-local run`: check everything that can be checked before a model loads, run, sum up."""

from __future__ import annotations

import argparse
import sys
import threading

from gra_local.backends.llama_process import LlamaProcessBackend
from gra_local.commands.progress import ProgressView
from gra_local.core.config import MAX_SAMPLES, RunOptions
from gra_local.core.engine.scheduler import Run
from gra_local.models.registry import load_models
from gra_local.prepare import build_options, prepare_run
from gra_local.runs.formatting import num, pct


def _quality(args: argparse.Namespace) -> dict:
    return {"dedup_threshold": None if args.no_dedup else args.dedup_threshold,
            "minhash": not args.no_minhash, "canaries": args.canaries,
            "calibration": args.calibration, "min_canary_accuracy": args.min_canary_accuracy}


def run_command(args: argparse.Namespace, stop: threading.Event) -> int:
    options = build_options(samples=args.samples, max_attempts=args.max_attempts,
                            rounds=args.rounds, panel=args.panel, tau=args.tau, delta=args.delta,
                            batch=args.batch, seed=args.seed, seed_pool=args.seed_pool,
                            **_quality(args))
    return _execute(Run, args, options, stop)


def review_command(args: argparse.Namespace, stop: threading.Event) -> int:
    from gra_local.core.engine.review_only import ReviewRun

    options = build_options(samples=MAX_SAMPLES, panel=args.panel, tau=args.tau,
                            delta=args.delta, batch=args.batch, seed=args.seed, **_quality(args))
    return _execute(ReviewRun, args, options, stop, review=True)


def _execute(kind: type[Run], args: argparse.Namespace, options: RunOptions,
             stop: threading.Event, review: bool = False) -> int:
    registry, source = load_models(args.models)
    request = prepare_run(args.seeds, args.out, options, registry, source, args.restart,
                          review=review)
    view = ProgressView(quiet=args.quiet)
    backend = LlamaProcessBackend(log_dir=args.out / "logs")
    try:
        result = kind(request, backend, view.emit, stop).execute()
    finally:
        view.close()
    print_summary(result.run_json, len(registry.models),
                  embedded=any(m.is_default for m in registry.models))
    return 130 if result.status == "interrupted" else 0


def print_summary(data: dict, n_models: int, embedded: bool = False, out=None) -> None:
    out = out or sys.stdout
    counts = data["counts"]
    decided = counts["accepted"] + counts["rejected"]
    rate = f"{counts['accepted'] / decided:.0%}" if decided else "–"
    lines = [
        "",
        f"status: {data['status']}",
        f"candidates decided: {decided} of {counts['attempts']} attempts; accepted "
        f"{counts['accepted']} ({rate}), rejected {counts['rejected']}, adjudicated "
        f"{counts['adjudicated']}",
    ]
    if counts["by_reason"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(counts["by_reason"].items()))
        lines.append(f"by reason: {reasons}")
    for name, v in data["judge_validity"].items():
        lines.append(f"judge output valid for {name}: {v['valid']:.1%} of {v['structured_calls']} "
                     f"structured calls ({v['valid_first_try']:.1%} on the first try)")
    lines += _round_lines(data) + _dedup_lines(data) + _calibration_lines(data)
    loads = ", ".join(f"{k} {v}" for k, v in data["loads"].items())
    lines.append(f"model loads: {loads}")
    total = sum(s.get("seconds", 0) for s in data.get("sessions", []))
    lines.append(f"time: {total:.1f} s over {len(data.get('sessions', []))} session(s)")
    if data["roles_shared"]["candidates"]:
        lines.append(f"roles shared: {data['roles_shared']['candidates']} candidates had a model "
                     f"play two roles ({n_models} model(s) for a panel of {data['roles_shared']['panel']})")
    if n_models == 1:
        lines.append("note: one model played every role, so it judged its own samples; GRA "
                     "works best with several different models.")
    if embedded:
        lines.append("note: the embedded SmolLM2-135M is a demo model: at 135M parameters it "
                     "writes weak samples and cannot judge them (measured: it scores correct "
                     "answers no higher than wrong ones), so treat this output as a smoke test. "
                     "For real data, list your own 1–8B GGUF models in a models file (see "
                     "models.toml) and pass --models FILE.")
    lines.append(f"output: {data['out_dir']}/accepted.jsonl, rejected.jsonl, run.json")
    print("\n".join(lines), file=out, flush=True)


def _round_lines(data: dict) -> list[str]:
    rounds = data.get("rounds") or {}
    if len(rounds) < 2:
        return []
    out = ["per round:"]
    for number, r in sorted(rounds.items(), key=lambda kv: int(kv[0])):
        dups = (r.get("by_reason") or {}).get("duplicate", 0)
        out.append(f"  round {number}: {r['attempts']} attempts, {r['accepted']} accepted, "
                   f"{r['rejected']} rejected ({dups} duplicates), {r.get('pool_added', 0)} "
                   "added to the next round's pool")
    return out


def _dedup_lines(data: dict) -> list[str]:
    dedup = data.get("dedup") or {}
    if not dedup.get("enabled"):
        return ["dedup: off"] if dedup else []
    dups = data["counts"]["by_reason"].get("duplicate", 0)
    return [f"dedup: {dedup['embedder']} at cosine {dedup['threshold']}: {dups} duplicates "
            f"dropped (compared with {dedup['references']} seeds and earlier samples)"]


def _calibration_lines(data: dict) -> list[str]:
    cal = data.get("calibration")
    if not cal or not cal.get("reviewers"):
        return []
    out = []
    panel = cal.get("panel") or {}
    alpha, kappa = panel.get("krippendorff_alpha_scores"), panel.get("fleiss_kappa_instruction")
    out.append(f"reviewers: panel agreement α {num(alpha)} (scores), κ {num(kappa)} "
               "(instruction checks)"
               + (f"; {cal['canaries_judged']} canaries judged (on them: α "
                  f"{num(panel.get('canary_krippendorff_alpha_scores'))}, κ "
                  f"{num(panel.get('canary_fleiss_kappa_instruction'))})"
                  if cal.get("canaries_per_batch") else ""))
    for name, r in sorted(cal["reviewers"].items()):
        mean = r.get("mean_score")
        line = f"  {name}: "
        if cal.get("canaries_per_batch"):  # canary figures exist only with --canaries
            line += (f"canary accuracy {pct(r.get('accuracy'))} of {r.get('canaries', 0)}, "
                     f"parse failures {pct(r.get('parse_failure_rate'))}, ")
        line += (f"mean score {num(mean, 1)}, agrees with panel "
                 f"{pct(r.get('agreement_with_panel'))}")
        if r.get("flagged"):
            line += f"  FLAGGED: {r.get('flag_reason')}"
        out.append(line)
    return out
