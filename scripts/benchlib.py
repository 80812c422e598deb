"""What the scripts/bench_*.py and scripts/tune_prompts.py share: private user directories,
the model to use, the bundled seeds, the pipeline backend, CPU-load watching, ratios that
are n/a rather than smoothed when a side is 0, one tokenizer count for both sides of a
comparison, the figure line, table printing and JSON output.

Not part of the product; the scripts put this folder on sys.path to import it.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from private_dirs import use_private_dirs  # a sibling module: scripts/ is on sys.path

from gra_local.backends.llama.process import LlamaProcessBackend
from gra_local.core import paths
from gra_local.core.backend import Session
from gra_local.core.config import ModelSpec
from gra_local.core.seeds.scan import Seed, iter_seeds
from gra_local.models.embedded import default_model_path

SEEDS_FILE = Path(__file__).resolve().parent.parent / "gra_local" / "data" / "example_seeds.jsonl"


# --- private user directories -------------------------------------------------------------



def private_user_dirs(prefix: str = "gra-bench-home-") -> Path:
    """Point this process's and its children's config, cache, data and state directories
    (the XDG ones and gra-local's own GRA_LOCAL_*_DIR) at a fresh temporary folder, deleted
    at exit, so that a bench leaves the user's settings.toml, registry and caches as they
    were. The user's downloaded models stay readable through a shadow data dir (see
    private_dirs.shadow_data_dir). Call it first, before anything resolves a path. Returns the folder."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, root, True)
    use_private_dirs(root)
    return root


# --- command line, model and seeds ------------------------------------------------------


def add_common_args(ap: argparse.ArgumentParser, json_help: str) -> None:
    ap.add_argument("--model", type=Path, help="GGUF file (default: the embedded SmolLM2-135M)")
    ap.add_argument("--json", type=Path, help=json_help)
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="first wait up to this long for the machine to be idle (1-min load "
                         "below 0.8 for 20 s); default 0: only warn when it is busy")


def parse_args(ap: argparse.ArgumentParser, quick: dict[str, Any], what: str) -> argparse.Namespace:
    """Parse the command line with a `--quick` flag (`what` says what it runs): with it,
    the `quick` values become the defaults, and options given explicitly still win."""
    ap.add_argument("--quick", action="store_true", help=f"CI smoke run, well under 2 min: {what}")
    args = ap.parse_args()
    if args.quick:
        ap.set_defaults(**quick)
        args = ap.parse_args()
    return args


def resolve_model(arg: Path | None) -> Path | None:
    """--model, or the embedded model of the data dir; None (with a message) if missing."""
    model = arg or default_model_path(paths.data_dir())
    if not model.is_file():
        print(f"model not found: {model} (run `gra-local models pull-default` or pass --model)",
              file=sys.stderr)
        return None
    return model.resolve()  # the file itself, not private_user_dirs' link to it


def load_seeds() -> list[Seed]:
    """The bundled example seeds (bad lines skipped)."""
    return [s for s in iter_seeds(SEEDS_FILE) if isinstance(s, Seed)]


def pick(seeds: list[Seed], n: int, offset: int = 0) -> list[Seed]:
    """n seeds spread evenly over the file (so over the domains), starting at offset."""
    step = len(seeds) / n
    return [seeds[(int(i * step) + offset) % len(seeds)] for i in range(n)]


@contextmanager
def pipeline_session(spec: ModelSpec) -> Iterator[tuple[Session, float]]:
    """A model loaded by the pipeline's backend (a worker process), and its load seconds."""
    with tempfile.TemporaryDirectory(prefix="gra-bench-") as logs:
        backend = LlamaProcessBackend(Path(logs), paths.data_dir())
        start = time.perf_counter()
        session = backend.load(spec)
        seconds = time.perf_counter() - start
        try:
            yield session, seconds
        finally:
            session.close()


# --- CPU load ---------------------------------------------------------------------------


def loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_idle(max_wait: float, threshold: float = 0.8, settle: float = 20.0) -> str:
    """Wait until the 1-minute load stays below `threshold` for `settle` seconds, at most
    `max_wait` seconds; say what happened (a warning if the machine is busy)."""
    start = time.monotonic()
    quiet_since: float | None = None
    while True:
        load = loadavg()
        if load is None:
            return "load average: unknown (no /proc/loadavg)"
        now = time.monotonic()
        if load >= threshold:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        if quiet_since is not None and (now - quiet_since >= settle or max_wait <= 0):
            return f"load average {load:.2f} at start"
        if now - start >= max_wait:
            return (f"WARNING: load average {load:.2f} at start (waited {now - start:.0f} s); "
                    "timings are not reliable")
        time.sleep(2)


class CpuWatch:
    """How much CPU *other* processes used while this script ran (Linux /proc/stat):
    llama.cpp spins its threads on barriers, so a run sharing its cores with anything
    else slows down far more than the share taken, and its timings are meaningless."""

    def __init__(self) -> None:
        self.start_wall = time.perf_counter()
        self.start = self._busy()
        self.start_own = self._own()

    @staticmethod
    def _busy() -> tuple[float, float] | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
        steal = fields[7] if len(fields) > 7 else 0
        return (user + nice + system + irq + softirq) / tick, steal / tick

    @staticmethod
    def _own() -> float:
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    def report(self) -> tuple[str, float]:
        """Call after every worker process has exited (their CPU counts as ours then)."""
        end = self._busy()
        wall = time.perf_counter() - self.start_wall
        if end is None or self.start is None:
            return "other CPU load: unknown (no /proc/stat)", float("nan")
        own = self._own() - self.start_own
        other = max(0.0, end[0] - self.start[0] - own)
        share = other / (wall * (os.cpu_count() or 1))
        text = (f"other processes used {other:.1f} core-seconds ({share:.0%} of "
                f"{os.cpu_count()} cores over {wall:.0f} s); this run used {own:.1f}")
        if end[1] - self.start[1] > 1:
            text += f"; steal {end[1] - self.start[1]:.1f} s"
        if share > 0.10:
            text += "\nWARNING: the machine was busy during this run: timings are not reliable"
        return text, share


# --- figures and output -------------------------------------------------------------------


def mean(xs: Sequence[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def std(xs: Sequence[float]) -> float:
    return statistics.pstdev(xs) if len(xs) > 1 else float("nan")


def tok_s(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else float("nan")


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ratio(ours: float, theirs: float) -> tuple[float | None, str]:
    """ours / theirs when both are finite and > 0, with "" as the reason; else None and why.
    Nothing is smoothed: a side at 0 gives no ratio rather than a made-up one."""
    for side, v in (("ours", ours), ("theirs", theirs)):
        if not math.isfinite(v):
            return None, f"{side} is not a number"
        if v <= 0:
            return None, f"{side} is 0"
    return ours / theirs, ""


def figure_line(name: str, value: float | None, why: str = "", digits: int = 3,
                extra: str = "") -> str:
    """A bench's last line: `name=value[ extra]`, or `name=n/a[ extra]  (why)` when there is
    no value (tests/scripts/test_benches.py parses it)."""
    shown = "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"
    line = f"{name}={shown}" + (f" {extra}" if extra else "")
    return line + (f"  ({why})" if why and shown == "n/a" else "")


class TokenCounter:
    """The model's own tokenizer (vocabulary only, no weights, ~0.3 s to load): counts the
    tokens of a produced text the same way whichever side produced it."""

    def __init__(self, model: Path) -> None:
        import llama_cpp

        self._llm = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)

    def __call__(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0


def pct(a: int, b: int) -> str:
    return f"{a}/{b} {100 * a / b:3.0f}%" if b else "-"


def tally(reasons: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in reasons:
        out[r] = out.get(r, 0) + 1
    return out


def fmt_reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])) or "-"


def print_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str,
                indent: str = "") -> None:
    """Columns as wide as their widest cell; `align` has one l or r per column; a last
    column aligned left is not padded."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align, strict=True)]
        print(indent + "  ".join(parts).rstrip())


def save_json(path: Path | None, data: Any) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=2, default=str))
