"""`gra-local run`: check everything that can be checked before a model loads, run, sum up."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TextIO

from gra_local.backends.llama.process import LlamaProcessBackend
from gra_local.backends.routing import RoutingBackend
from gra_local.commands.progress import ProgressView
from gra_local.core.engine.scheduler import Run, Source
from gra_local.core.options import RunOptions
from gra_local.core.rundir.report import DedupOn, RunReport, duplicates
from gra_local.models.registry import load_models
from gra_local.prepare import build_options, prepare_run, review_options
from gra_local.runs.formatting import num, pct


def run_command(args: argparse.Namespace, values: Mapping[str, object],
                stop: threading.Event) -> int:
    """`values`: the RunOptions fields as cli.py read them from the generated flags."""
    return _execute(args, build_options(values, "cli"), stop)


def review_command(args: argparse.Namespace, values: Mapping[str, object],
                   stop: threading.Event) -> int:
    from gra_local.core.engine.review_only import ReviewSource

    return _execute(args, review_options(values, "cli"), stop, ReviewSource())


def _execute(args: argparse.Namespace, options: RunOptions, stop: threading.Event,
             source: Source | None = None) -> int:
    try:
        with _stop_at_once():
            registry, models_file = load_models(args.models)
            request = prepare_run(args.seeds, args.out, options, registry, models_file,
                                  args.restart, review=source is not None)
        if stop.is_set():  # a Ctrl-C just before or after the checks
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        print(f"\ngra-local: interrupted while the run was being prepared: it did not start, "
              f"nothing was written to {args.out}", file=sys.stderr)
        return 130
    view = ProgressView(quiet=args.quiet)
    backend = RoutingBackend(LlamaProcessBackend(log_dir=args.out / "logs"))
    try:
        result = Run(request, backend, view.emit, stop, source=source).execute()
    finally:
        view.close()
    print_summary(result.run_json, len(registry.models),
                  embedded=any(m.is_default for m in registry.models))
    return 130 if result.status == "interrupted" else 0


@contextmanager
def _stop_at_once() -> Iterator[None]:
    """While the run is prepared (models hashed, servers contacted, the embedder loaded),
    Ctrl-C or SIGTERM stops at once: nothing is written yet, so there is nothing to finish
    or save. The run's own handler (cli._install_stop) is back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def at_once(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, at_once) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def print_summary(data: RunReport, n_models: int, embedded: bool = False,
                  out: TextIO | None = None) -> None:
    out = out or sys.stdout
    counts = data.counts
    decided = counts.accepted + counts.rejected + counts.unverified
    rate = pct(counts.accepted / decided if decided else None)
    lines = [
        "",
        f"status: {data.status}",
        f"candidates decided: {decided} of {counts.attempts} attempts; accepted "
        f"{counts.accepted} ({rate}), rejected {counts.rejected}, adjudicated "
        f"{counts.adjudicated}" + (f", unverified {counts.unverified} (no evidence shown "
                                   "informative: kept apart, not judged)" if counts.unverified else ""),
    ]
    if counts.by_reason:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(counts.by_reason.items()))
        lines.append(f"by reason: {reasons}")
    for name, v in data.judge_validity.items():
        lines.append(f"judge output valid for {name}: {v.valid:.1%} of {v.structured_calls} "
                     f"structured calls ({v.valid_first_try:.1%} on the first try)")
    lines += _round_lines(data) + _dedup_lines(data) + _calibration_lines(data)
    if (lk := data.likelihood) is not None:
        lines.append(f"likelihood: {lk.scored} answers read by {lk.model}" if lk.enabled
                     else f"likelihood: {lk.note}")
        if lk.enabled and lk.note:
            lines.append(f"  {lk.note}")
        lines += [f"  {n} {why}" for why, n in lk.unscored.items()]
    loads = ", ".join(f"{k} {v}" for k, v in data.loads.items())
    lines.append(f"model loads: {loads}")
    lines.append(f"time: {data.seconds:.1f} s over {len(data.sessions)} session(s)")
    shared = data.roles_shared
    if shared is not None and shared.candidates:
        lines.append(f"roles shared: {shared.candidates} candidates had a model play two roles "
                     f"({n_models} model(s) for a panel of {shared.panel})")
    if n_models == 1:
        lines.append("note: one model played every role, so it judged its own samples; GRA "
                     "works best with several different models.")
    if embedded:
        lines.append("note: the embedded SmolLM2-135M is a demo model: at 135M parameters it "
                     "writes weak samples and cannot judge them (measured: it scores correct "
                     "answers no higher than wrong ones), so treat this output as a smoke test. "
                     "For real data, list your own 1–8B GGUF models in a models file (see "
                     "models.toml) and pass --models FILE.")
    lines.append(f"output: {data.out_dir}/accepted.jsonl, rejected.jsonl, "
                 + ("unverified.jsonl, " if counts.unverified else "") + "run.json")
    print("\n".join(lines), file=out, flush=True)


def _round_lines(data: RunReport) -> list[str]:
    if len(data.rounds) < 2:
        return []
    out = ["per round:"]
    for number, r in sorted(data.rounds.items(), key=lambda kv: int(kv[0])):
        out.append(f"  round {number}: {r.attempts} attempts, {r.accepted} accepted, "
                   f"{r.rejected} rejected ({duplicates(r)} duplicates), {r.pool_added} "
                   "added to the next round's pool")
    return out


def _dedup_lines(data: RunReport) -> list[str]:
    dedup = data.dedup
    if dedup is None:
        return []
    if not isinstance(dedup, DedupOn):
        return ["dedup: off"]
    return [f"dedup: {dedup.embedder} at cosine {dedup.threshold}: {data.duplicates} duplicates "
            f"dropped (compared with {dedup.references} seeds and earlier samples)"]


def _calibration_lines(data: RunReport) -> list[str]:
    cal = data.calibration
    if cal is None or not cal.reviewers:
        return []
    out = []
    panel = cal.panel
    out.append(f"reviewers: panel agreement α {num(panel.krippendorff_alpha_scores)} (scores), "
               f"κ {num(panel.fleiss_kappa_instruction)} (instruction checks)"
               + (f"; {cal.canaries_judged} canaries judged (on them: α "
                  f"{num(panel.canary_krippendorff_alpha_scores)}, κ "
                  f"{num(panel.canary_fleiss_kappa_instruction)})"
                  if cal.canaries_per_batch else ""))
    for name, r in sorted(cal.reviewers.items()):
        line = f"  {name}: "
        if cal.canaries_per_batch:  # canary figures exist only with --canaries
            line += (f"canary accuracy {pct(r.accuracy)} of {r.canaries} (balanced "
                     f"{pct(r.balanced_accuracy)}, weight {r.weight:.2f}), injections let "
                     f"through {pct(r.injection_pass_rate)} of {r.injections}, "
                     f"parse failures {pct(r.parse_failure_rate)}, ")
        line += (f"mean score {num(r.mean_score, 1)}, agrees with panel "
                 f"{pct(r.agreement_with_panel)}")
        if r.flagged:
            line += f"  FLAGGED: {r.flag_reason}"
        out.append(line)
    if cal.evidence:
        most = max(d.pairs for d in cal.evidence.values())
        out.append(f"evidence on {most} canary pairs (how often each ranked the original above "
                   "its corruption; P(better than chance)):")
        out += [f"  {piece}: {pct(d.accuracy)} of {d.pairs} ({num(d.p_better, 2)}) "
                f"{(d.standing or '').replace('_', ' ')}"
                + (f", rejects below {d.threshold}" if d.threshold is not None else "")
                for piece, d in cal.evidence.items()]
    if cal.decided_by:
        out.append(f"decided by: {cal.decided_by}"
                   + (f"; {cal.panel_not_asked} panel slots not asked" if cal.panel_not_asked else ""))
    if (routing := data.routing) is not None and (routing.stopped_early or routing.extra_reviewers):
        out.append(f"routing: {routing.stopped_early} panel slots skipped (first reviewers sure), "
                   f"{routing.extra_reviewers} reviewers added (panel unsure)")
    return out
