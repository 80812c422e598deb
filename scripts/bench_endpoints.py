#!/usr/bin/env python3
"""Benchmark: one review job through one llama-cpp-python server, then through two, on
the same total number of threads.

Starts real OpenAI-compatible servers on loopback, `python -m llama_cpp.server` serving the
embedded SmolLM2-135M GGUF (or --model) with `--n_ctx 2048` and a fixed `--seed`: one
server with --threads threads (default 2), then two servers with half of them each
(`--n_threads T --n_threads_batch T`: the batch threads would default to every core), so
both setups use the same cores and only how they are served changes. It runs the same
`gra-local review` on each: the same instruction/response pairs (the bundled example
seeds, which all carry a response; cycled when --pairs asks for more), `--panel`,
`--seed`, `--no-dedup`, `--judge panel`, one batch, with a models.toml whose one reviewer
and adjudicator is the endpoint model `smol-server`:
- one server: `endpoint = URL`, `max_in_flight = --in-flight` (default 4);
- two servers: `endpoint = [URL1, URL2]`, `max_in_flight = --in-flight / 2` each.
The total in flight is the same both ways, so the client offers the same concurrency.
llama-cpp-python's server decodes one request at a time (a lock around its model), so a
queue of 2 per server is enough to keep it from ever idling between requests. Each setup
gets fresh servers, started before the timed review (each server evaluates its first
prompt of a stage without a cached prefix: two servers pay that once more per stage).

Throughput is completion tokens (run.json `tokens`, as the servers report them: the same
counter on both setups) per second of the review's stages (run.json `timings`: the
engine's time in review A, review B and adjudication, without the CLI's start and the
connection to the servers, the same clock in both). Tokens, not calls: the two runs need
not make the same number of calls (retries, adjudications), nor calls of the same length.
Calls/s and the whole command's wall time are shown beside it. Judge validity is run.json
`judge_validity` of the endpoint model, pooled over both runs (goal >= 95 %, as
in-process). Prints a table; the last line is `scale_2_endpoints=<completion tok/s with
two servers of T/2 threads ÷ with one server of T threads> validity=<percent>` (above 1:
splitting the same cores over two servers serves more; before issue 21 it compared one
1-thread server with two, i.e. measured a second core). The servers are stopped on every
way out (an error, Ctrl-C, SIGTERM; on Linux they also die with this script if it is
killed outright).

Config, cache and data dirs are private temporary ones (benchlib.private_user_dirs).
Run alone, on an otherwise idle machine: `python scripts/bench_endpoints.py [--pairs 21]
[--panel 3] [--in-flight 4] [--threads 2] [--wait-idle 120] [--json FILE]`.
`--quick` (CI, well under 2 min): 4 pairs, a panel of 1; checks the mechanics only (both
reviews complete and decide every pair, run.json names the servers used, each of the two
servers answered calls), not the figures.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import math
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

import httpx

from gra_local.core.rundir.report import read_report

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below
import benchlib  # noqa: E402

NAME = "smol-server"
JUDGE_STAGES = ("review_a", "review_b", "adjudicate")


# --- servers ----------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In a child process before exec (Linux): SIGKILL it when this script dies."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


DIE_WITH_PARENT = _die_with_parent if sys.platform.startswith("linux") else None


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held until all are chosen)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class Server:
    model: Path
    port: int
    log: Path
    seed: int
    threads: int = 1
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model),
                "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", str(self.threads),
                "--n_threads_batch", str(self.threads), "--n_ctx", "2048", "--seed", str(self.seed)]

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=DIE_WITH_PARENT)

    def wait_ready(self, deadline: float) -> None:
        with httpx.Client(trust_env=False, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    tail = self.log.read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"llama_cpp.server on port {self.port} exited:\n{tail}")
                try:
                    if client.get(self.url + "/models").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"llama_cpp.server on port {self.port} did not answer in time "
                           f"(log: {self.log})")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def chat_calls(self) -> int:
        """Chat completions it answered, from uvicorn's access log."""
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return text.count('"POST /v1/chat/completions HTTP/1.1" 200')


def threads_each(total: int, n: int) -> int:
    """Threads per server when n servers share `total` threads (the same cores both ways)."""
    if total < n or total % n:
        raise ValueError(f"{total} threads do not split evenly over {n} servers")
    return total // n


@contextmanager
def servers(model: Path, n: int, work: Path, seed: int, threads: int) -> Iterator[list[Server]]:
    """n fresh servers of `threads` threads each, started together and stopped whatever
    happens."""
    started = [Server(model, port, work / f"server-{i + 1}.log", seed, threads)
               for i, port in enumerate(free_ports(n))]
    try:
        for server in started:
            server.start()
        deadline = time.monotonic() + 120
        for server in started:
            server.wait_ready(deadline)
        yield started
    finally:
        for server in started:
            server.stop()


def _stop_on_sigterm() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every `finally` stops its servers."""
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)


# --- the review job ---------------------------------------------------------------------------


def write_pairs(path: Path, n: int) -> int:
    """n instruction/response pairs from the bundled seeds (cycled past their count);
    returns how many distinct pairs there are."""
    pairs = [s for s in benchlib.load_seeds() if s.response]
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            seed = pairs[i % len(pairs)]
            out.write(json.dumps({"instruction": seed.instruction, "output": seed.response}) + "\n")
    return min(n, len(pairs))


def write_models(path: Path, urls: list[str], in_flight: int) -> None:
    endpoint = json.dumps(urls[0]) if len(urls) == 1 else json.dumps(urls)
    path.write_text(f'[[models]]\nname = "{NAME}"\nendpoint = {endpoint}\n'
                    f'max_in_flight = {in_flight}\nroles = ["reviewer", "adjudicator"]\n',
                    encoding="utf-8")


@dataclass
class Phase:
    setup: str
    urls: list[str]
    in_flight: int
    threads: int = 1
    """Per server."""
    wall_s: float = 0.0
    review_s: float = 0.0
    status: str = ""
    decided: int = 0
    calls: int = 0
    completion_tokens: int = 0
    structured_calls: int = 0
    valid: float = 0.0
    server_kind: str | None = None
    endpoint: str | None = None
    connected: str = ""
    per_server_calls: list[int] = field(default_factory=list)

    @property
    def calls_s(self) -> float:
        return self.calls / self.review_s if self.review_s > 0 else math.nan

    @property
    def tok_s(self) -> float:
        return benchlib.tok_s(self.completion_tokens, self.review_s)


def scale(one: Phase, two: Phase) -> tuple[float | None, str]:
    """The headline: completion tokens/s of the review stages, two servers ÷ one."""
    return benchlib.ratio(two.tok_s, one.tok_s)


def review(work: Path, data: Path, phase: Phase, args: argparse.Namespace) -> None:
    models, out = work / "models.toml", work / "out"
    write_models(models, phase.urls, phase.in_flight)
    cmd = [sys.executable, "-m", "gra_local.cli", "review", str(data), "--out", str(out),
           "--models", str(models), "--panel", str(args.panel), "--seed", str(args.seed),
           "--batch", str(args.pairs), "--no-dedup",
           "--judge", "panel"]  # serving judge calls is what this bench measures
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=3600, check=False, preexec_fn=DIE_WITH_PARENT)
    phase.wall_s = time.perf_counter() - start
    report = read_report(out / "run.json")
    if proc.returncode != 0 or report is None:
        raise RuntimeError(f"{phase.setup}: gra-local review exited {proc.returncode}:\n"
                           f"{proc.stderr[-2000:]}")
    phase.connected = next((ln for ln in proc.stderr.splitlines()
                            if ln.startswith(f"{NAME}: ")), "")
    phase.status = report.status
    phase.decided = report.counts.accepted + report.counts.rejected
    phase.review_s = sum(report.timings.get(stage, 0.0) for stage in JUDGE_STAGES)
    stats = report.stats.models.get(NAME) if report.stats is not None else None
    phase.calls = stats.calls if stats is not None else 0
    tokens = report.tokens.get(NAME)
    phase.completion_tokens = tokens.completion if tokens is not None else 0
    validity = report.judge_validity.get(NAME)
    if validity is not None:
        phase.structured_calls, phase.valid = validity.structured_calls, validity.valid
    ref = report.models.get(NAME)
    if ref is not None:
        phase.server_kind, phase.endpoint = ref.server, ref.endpoint


def mechanics(phases: list[Phase], pairs: int) -> list[str]:
    """What must hold for the figures to mean anything; an empty list when all does."""
    problems = []
    for p in phases:
        if p.status != "complete" or p.decided != pairs:
            problems.append(f"{p.setup}: status {p.status!r}, {p.decided} of {pairs} pairs decided")
        if p.endpoint != ", ".join(p.urls) or p.server_kind != "llama.cpp":
            problems.append(f"{p.setup}: run.json names {p.endpoint!r} ({p.server_kind}), "
                            f"not {', '.join(p.urls)} (llama.cpp)")
        if not p.calls or p.structured_calls == 0:
            problems.append(f"{p.setup}: no judge calls counted in run.json")
        if any(n == 0 for n in p.per_server_calls):
            problems.append(f"{p.setup}: a server answered no call ({p.per_server_calls})")
        if sum(p.per_server_calls) < p.calls:
            problems.append(f"{p.setup}: the servers logged {sum(p.per_server_calls)} calls, "
                            f"run.json counts {p.calls}")
    return problems


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=21, help="pairs reviewed (default 21, the "
                    "bundled seeds; more cycle them)")
    ap.add_argument("--panel", type=int, default=3, help="reviewers per pair (default 3)")
    ap.add_argument("--in-flight", type=int, default=4, help="requests in flight in all "
                    "(default 4): max_in_flight of the one server, half of it on each of two")
    ap.add_argument("--seed", type=int, default=0, help="the review's --seed and the servers' "
                    "(default 0)")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads in all (default "
                    "2): all of them on the one server, half on each of two")
    benchlib.add_common_args(ap, "write the figures to this JSON file")
    args = benchlib.parse_args(ap, {"pairs": 4, "panel": 1}, "4 pairs, a panel of 1, "
                               "mechanics checked, figures not")
    if (args.pairs < 1 or args.panel < 1 or args.in_flight < 2 or args.in_flight % 2
            or args.threads < 2 or args.threads % 2):
        ap.error("--pairs and --panel must be at least 1, --in-flight and --threads even "
                 "numbers >= 2")
    benchlib.private_user_dirs()
    _stop_on_sigterm()
    model = benchlib.resolve_model(args.model)
    if model is None:
        return 2
    print(benchlib.wait_idle(args.wait_idle))
    watch = benchlib.CpuWatch()
    with tempfile.TemporaryDirectory(prefix="gra-bench-endpoints-") as tmp:
        root = Path(tmp)
        data = root / "pairs.jsonl"
        distinct = write_pairs(data, args.pairs)
        print(f"model {model.name}; {args.pairs} pairs ({distinct} distinct), panel "
              f"{args.panel}, seed {args.seed}; {args.in_flight} requests in flight and "
              f"{args.threads} threads in all; "
              f"{'quick mode' if args.quick else 'full mode'}")
        phases: list[Phase] = []
        try:
            for n in (1, 2):
                work = root / f"{n}-server"
                work.mkdir()
                each = threads_each(args.threads, n)
                with servers(model, n, work, args.seed, each) as running:
                    phase = Phase(f"{n} server{'s' * (n > 1)}", [s.url for s in running],
                                  args.in_flight // n, each)
                    review(work, data, phase, args)
                phase.per_server_calls = [s.chat_calls() for s in running]
                phases.append(phase)
                print(f"  {phase.setup}: {phase.connected or 'no connect line'}", flush=True)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    cpu, _share = watch.report()
    one, two = phases
    rows = [(p.setup, p.threads, p.in_flight, f"{p.wall_s:.1f}", f"{p.review_s:.1f}", p.calls,
             f"{p.calls_s:.2f}", p.completion_tokens, f"{p.tok_s:.1f}", f"{100 * p.valid:.1f}%",
             "+".join(map(str, p.per_server_calls)), p.status) for p in phases]
    benchlib.print_table(("setup", "threads/server", "in flight/server", "wall s", "review s",
                          "calls", "calls/s", "tokens", "tok/s", "valid", "server calls", "status"),
                         rows, "lrrrrrrrrrll")
    print(cpu)
    structured = sum(p.structured_calls for p in phases)
    validity = (100 * sum(p.valid * p.structured_calls for p in phases) / structured
                if structured else math.nan)
    value, why = scale(one, two)
    wall_scale, _ = benchlib.ratio(benchlib.tok_s(two.completion_tokens, two.wall_s),
                                   benchlib.tok_s(one.completion_tokens, one.wall_s))
    calls_scale, _ = benchlib.ratio(two.calls_s, one.calls_s)
    print(f"tok/s by wall time of the whole command, two ÷ one: "
          f"{wall_scale if wall_scale is not None else math.nan:.2f}; calls/s of the stages, two ÷ "
          f"one: {calls_scale if calls_scale is not None else math.nan:.2f} (calls differ in "
          "number and length); goal: validity >= 95 %")
    if args.quick:
        print("quick mode: too few calls for the figures to mean anything (each server "
              "evaluates its first prompt of a stage without a cached prefix)")
    benchlib.save_json(args.json, {
        "model": str(model), "pairs": args.pairs, "panel": args.panel, "seed": args.seed,
        "in_flight": args.in_flight, "threads": args.threads, "quick": args.quick, "cpu": cpu,
        "phases": [{**asdict(p), "calls_s": p.calls_s, "tok_s": p.tok_s} for p in phases],
        "scale_2_endpoints": value, "scale_by_wall": wall_scale, "calls_scale": calls_scale,
        "validity_percent": validity})
    problems = mechanics(phases, args.pairs)
    for problem in problems:
        print(f"mechanics check failed: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(benchlib.figure_line("scale_2_endpoints", value, why, extra=f"validity={validity:.1f}%"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # every `finally` has run: the servers are stopped
        print("interrupted", file=sys.stderr)
        sys.exit(130)
