"""`gra-local run`: check everything that can be checked before a model loads, run, sum up."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from pydantic import ValidationError

from gra_local.backends.llama_process import LlamaProcessBackend
from gra_local.commands.progress import ProgressView
from gra_local.core import paths
from gra_local.core.config import RunOptions
from gra_local.core.errors import ConfigError, SeedError
from gra_local.core.eta import Speed, predict_seconds
from gra_local.core.scheduler import Run, RunRequest
from gra_local.models.bench import BenchStore
from gra_local.models.fit import residency_for
from gra_local.models.registry import load_models
from gra_local.models.resolve import check_model_file, model_ref


def build_options(args: argparse.Namespace) -> RunOptions:
    try:
        return RunOptions(samples=args.samples, max_attempts=args.max_attempts, rounds=args.rounds,
                          panel=args.panel, tau=args.tau, delta=args.delta, batch=args.batch,
                          seed=args.seed, seed_pool=args.seed_pool)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None


def run_command(args: argparse.Namespace, stop: threading.Event) -> int:
    options = build_options(args)
    if not args.seeds.is_file():
        raise SeedError(f"{args.seeds}: seed file not found")
    registry, source = load_models(args.models)
    refs, checked = {}, []
    for spec in registry.models:  # fail on a bad model file now, not after an hour
        _, info = check_model_file(spec)
        checked.append((spec, info))
        refs[spec.name] = model_ref(spec)
    request = RunRequest(seeds=args.seeds, out_dir=args.out, options=options, registry=registry,
                         refs=refs, models_source=source, cache_dir=paths.cache_dir(),
                         restart=args.restart, residency=residency_for(checked))
    request.predicted_seconds, request.eta_note = _predict(request, checked)
    view = ProgressView(quiet=args.quiet)
    backend = LlamaProcessBackend(log_dir=args.out / "logs")
    try:
        result = Run(request, backend, view.emit, stop).execute()
    finally:
        view.close()
    print_summary(result.run_json, len(registry.models),
                  embedded=any(m.is_default for m in registry.models))
    return 130 if result.status == "interrupted" else 0


def _predict(request: RunRequest, checked: list) -> tuple[float | None, str]:
    """Predicted duration from stored `models bench` figures, and the line that says so."""
    store = BenchStore(paths.cache_dir())
    speeds, missing = {}, []
    for spec, info in checked:
        bench = store.latest(Path(info.path))
        if bench is None:
            missing.append(spec.name)
        else:
            speeds[spec.name] = Speed(bench.prompt_tokens_per_s, bench.decode_tokens_per_s,
                                      bench.load_seconds)
    if missing:
        return None, f"no ETA: run `gra-local models bench NAME` once for {', '.join(missing)}"
    opts = request.options
    seconds = predict_seconds(speeds, opts.samples, opts.attempt_cap, opts.rounds, opts.panel,
                              opts.seed_pool)
    return seconds, f"predicted duration: about {seconds / 60:.1f} min (from `models bench` figures)"


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
