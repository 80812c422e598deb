#!/usr/bin/env python3
"""Fault drill: real `gra-local run`s on the embedded model, with faults injected.

Cases, each in run directories of its own (a new one, with another --seed, whenever a
run ends before its fault is spent):
- kill: `--kills N` (20) SIGKILLs of the gra-local process at random moments (uniform in
  [--min-delay, --max-delay] s after a start; every other one 0-1.5 s after a model call
  was journaled, i.e. mid-batch), each followed by a resume, until the run ends.
- sigstop, sigsegv: the run's llama.cpp worker (its child running gra_local.backends.llama.
  worker) is stopped / crashed once candidates are being decided; the run must go on.
- disk-full, twice, then resumed without the limit; the limited run must exit 2 with one
  error line: `at start` under RLIMIT_FSIZE (`ulimit -f`, preexec_fn) of --fsize-kib, which
  the worker inherits (llama.cpp's load log outgrows it first); `mid-run`, the same limit
  set on the running gra-local process alone (prlimit) once its journal outgrew it.

Counts, over all cases (faults: faults injected):
- lost: ids seen (read after every fault and at the end) or within run.json's attempts,
  missing from the DECIDED files at the end, less those a complete run kept undecided in
  its journal (not needed: for a rerun asking for more; shown apart); plus one per run
  whose final status is not complete/exhausted, or sigstop/sigsegv run not ending exit 0.
- duplicated: ids written more than once across accepted/rejected/canaries (each extra copy).
- tracebacks: gra-local processes whose stdout or stderr holds "Traceback".
- hangs: gra-local processes that did not end within --limit s, and workers still running
  15 s after their run ended or was killed (an orphan that would spin on); all then killed.
Other failed expectations (exit code, error lines, a fault not injected) print as
`problem:` lines. Last line: `faults=N lost=L duplicated=D tracebacks=T hangs=H`; exit 0
only when all four are 0 and there was no problem. `--quick`: 3 kills of a smaller run.
Config, cache and data dirs are private temporary ones (benchlib.private_user_dirs).
Linux only (reads /proc). Usage: `python scripts/fault_drill.py [--json FILE]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below
import benchlib  # noqa: E402

from gra_local.core import paths  # noqa: E402
from gra_local.embed.minilm_files import is_present  # noqa: E402

WORKER = "gra_local.backends.llama.worker"
FINAL = ("complete", "exhausted")
DECIDED = ("accepted.jsonl", "rejected.jsonl", "unverified.jsonl", "canaries.jsonl")
ERROR = "gra-local: error:"


def read(path: Path) -> bytes:
    with contextlib.suppress(OSError):
        return path.read_bytes()
    return b""


def json_or_none(data: bytes) -> dict | None:
    with contextlib.suppress(orjson.JSONDecodeError):
        return orjson.loads(data)
    return None


def complete_lines(path: Path) -> list[dict]:
    """The whole JSON lines of a JSONL file (a torn last line, or an unreadable one, skipped)."""
    return [r for r in map(json_or_none, read(path).split(b"\n")[:-1]) if r is not None]


def stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process, None when it is gone."""
    fields = read(Path(f"/proc/{pid}/stat")).rsplit(b")", 1)[-1].split()
    return (fields[0].decode(), int(fields[1]), int(fields[2])) if len(fields) > 2 else None


def live(pred) -> list[int]:
    """Processes (zombies left out) whose (state, ppid, pgid) pass `pred`."""
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and (st := stat(int(e.name))) and st[0] != "Z" and pred(st)]


def workers_of(pid: int) -> list[int]:
    return [c for c in live(lambda st: st[1] == pid) if WORKER.encode() in read(Path(f"/proc/{c}/cmdline"))]


@dataclass
class Counts:
    faults: int = 0
    lost: int = 0
    duplicated: int = 0
    tracebacks: int = 0
    hangs: int = 0
    problems: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)


class Drill:
    def __init__(self, args: argparse.Namespace, work: Path, model: Path) -> None:
        self.args, self.work = args, work
        self.rng = random.Random(args.seed)
        self.c = Counts()
        self.models = work / "models.toml"
        self.models.write_text(f'[[models]]\nname = "smol"\npath = "{model}"\n')  # n_ctx: its default
        self.episodes = 0
        self.dedup = [] if is_present(paths.data_dir()) else ["--no-dedup"]

    def say(self, case: str, text: str, **info: object) -> None:
        print(f"{case}: {text}", flush=True)
        self.c.events.append({"case": case, "text": text, **info})

    def problem(self, case: str, text: str) -> None:
        self.c.problems.append(f"{case}: {text}")
        print(f"problem: {case}: {text}", flush=True)

    def episode(self, case: str) -> Episode:
        self.episodes += 1
        return Episode(self, case, f"{case}-{self.episodes}", self.args.seed + self.episodes)

    def kills(self, n: int) -> None:
        """The kill case: SIGKILLs of gra-local, each resumed, until n were made."""
        ep, left, failed = self.episode("kill"), n, 0
        while left > 0:
            proc, started = ep.start(), time.monotonic()
            if left % 2 == 0:  # every other kill point: just after a candidate's model call
                ep.wait_for(proc, lambda: ep.journaled(proc))  # noqa: B023 (called at once)
                delay = self.rng.uniform(0, 1.5)
            else:
                delay = self.rng.uniform(self.args.min_delay, self.args.max_delay)
            if ep.wait(proc, delay):  # it ended before this kill point: go on in a new directory
                failed = failed + 1 if ep.ended(proc) != 0 else 0
                ep.check()
                if failed == 2:
                    return self.problem("kill", f"two runs in a row failed by themselves; {left} kills not made")
                ep = self.episode("kill")
                continue
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            left -= 1
            self.c.faults += 1
            ep.observe()
            delay = time.monotonic() - started
            self.say("kill", f"{ep.name}: SIGKILL {delay:.1f} s after its start; {ep.progress()}", delay=delay)
            ep.reap(proc.pid)
        ep.finish()
        ep.check()

    def worker_fault(self, case: str, sig: signal.Signals) -> None:
        ep = self.episode(case)
        proc = ep.start()
        target = ep.when_deciding(proc)
        if target is None:
            ep.stop(proc)
            self.problem(case, f"{ep.name}: found no worker to signal while candidates were decided")
            return
        time.sleep(self.rng.uniform(0, 2))
        os.kill(target, sig)
        self.c.faults += 1
        ep.observe()
        self.say(case, f"{ep.name}: {sig.name} to worker {target}; {ep.progress()}")
        if not ep.wait(proc, self.args.limit):
            ep.hung(proc)
        elif (rc := ep.ended(proc)) != 0 or (status := ep.status()) not in FINAL:
            self.c.lost += 1
            self.say(case, f"{ep.name}: the run stopped (exit {rc}, status {ep.status()}) instead "
                     "of going on: counted as lost", rc=rc)
        else:
            self.say(case, f"{ep.name}: the run went on and ended {status}")
        ep.finish()
        ep.check()

    def disk_full(self, mid_run: bool) -> None:
        case = "disk-full"
        limit = self.args.fsize_kib * 1024
        ep = self.episode(case)
        if mid_run:
            proc = ep.start()
            if not ep.wait_for(proc, lambda: ep.size("journal.jsonl") > limit):
                ep.stop(proc)
                self.problem(case, f"{ep.name}: the journal never outgrew {self.args.fsize_kib} KiB")
                return
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, limit))
        else:
            proc = ep.start(preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
        self.c.faults += 1
        if not ep.wait(proc, self.args.limit):
            ep.hung(proc)
        else:
            rc = ep.ended(proc)
            errors = [ln for ln in ep.output(proc, "err").splitlines() if ln.strip()]
            self.say(case, f"{ep.name}: RLIMIT_FSIZE {self.args.fsize_kib} KiB {'mid-run' if mid_run else 'at start'}"
                     f": exit {rc}; {errors[-1] if errors else 'no error line'}", rc=rc)
            if rc != 2 or len(errors) != 1 or not errors[0].startswith(ERROR):
                self.problem(case, f"{ep.name}: wanted exit 2 and one `{ERROR}` line, got exit "
                             f"{rc} and {len(errors)} stderr line(s)")
        ep.finish()
        ep.check()


class Episode:
    """One run directory and the command that runs (and resumes) it."""

    def __init__(self, drill: Drill, case: str, name: str, seed: int) -> None:
        self.d, self.case, self.name = drill, case, name
        self.out = drill.work / name
        a = drill.args
        self.cmd = [sys.executable, "-m", "gra_local.cli", "run", str(benchlib.SEEDS_FILE), "--out",
                    str(self.out), "--models", str(drill.models), "--samples", str(a.samples), "--max-attempts",
                    str(a.max_attempts), "--batch", str(a.batch), "--seed-pool", str(a.seed_pool),
                    "--seed", str(seed), "--quiet", *drill.dedup]
        self.seen: set[str] = set()
        self.starts = 0
        self.logs: dict[int, Path] = {}  # pid → the stem of its .out and .err files

    def start(self, preexec=None) -> subprocess.Popen:
        self.starts += 1
        stem = self.d.work / f"{self.name}.{self.starts}"
        with open(f"{stem}.out", "wb") as out, open(f"{stem}.err", "wb") as err:
            proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True, preexec_fn=preexec)
        self.logs[proc.pid] = stem
        self.loaded_at: float | None = None
        return proc

    def journaled(self, proc: subprocess.Popen) -> bool:
        """Whether a model call was journaled since the process's worker appeared (loaded)."""
        if self.loaded_at is None:
            self.loaded_at = time.time() if workers_of(proc.pid) else None
            return False
        return (self.out / "journal.jsonl").stat().st_mtime > self.loaded_at

    def output(self, proc: subprocess.Popen, which: str) -> str:
        return Path(f"{self.logs[proc.pid]}.{which}").read_text(errors="replace")

    @staticmethod
    def wait(proc: subprocess.Popen, seconds: float) -> bool:
        try:
            return proc.wait(timeout=seconds) is not None
        except subprocess.TimeoutExpired:
            return False

    def wait_for(self, proc: subprocess.Popen, cond) -> bool:
        """Until `cond()` (True) or the run ends or --limit passes (False)."""
        end = time.monotonic() + self.d.args.limit
        while time.monotonic() < end and proc.poll() is None:
            if cond():
                return True
            time.sleep(0.2)
        return False

    def when_deciding(self, proc: subprocess.Popen) -> int | None:
        """The run's worker, once it journaled a candidate's model call."""
        found = workers_of(proc.pid) if self.wait_for(proc, lambda: self.journaled(proc)) else []
        return found[0] if found else None

    def ended(self, proc: subprocess.Popen) -> int:
        """Check a process that ended by itself; its leftovers are reaped."""
        rc = proc.wait()
        if rc not in (0, -signal.SIGKILL):
            last = (self.output(proc, "err").strip().splitlines() or ["nothing on stderr"])[-1]
            self.d.say(self.case, f"{self.name}: start {self.logs[proc.pid].suffix[1:]} ended by itself, exit {rc}: {last}")
        if any("Traceback" in self.output(proc, which) for which in ("out", "err")):
            self.d.c.tracebacks += 1
            self.d.say(self.case, f"{self.name}: Traceback in the output of {self.logs[proc.pid]}.err")
        self.reap(proc.pid)
        self.observe()
        return rc

    def stop(self, proc: subprocess.Popen) -> None:
        """After a fault could not be injected: the run's end, or its hang."""
        if proc.poll() is None and not self.wait(proc, self.d.args.limit):
            self.hung(proc)
        else:
            self.ended(proc)

    def hung(self, proc: subprocess.Popen) -> None:
        self.d.c.hangs += 1
        self.d.say(self.case, f"{self.name}: still running after {self.d.args.limit:.0f} s: a hang; killed")
        for pid in live(lambda st: st[2] == proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        self.ended(proc)

    def reap(self, pgid: int, grace: float = 15.0) -> None:
        """Processes of the run's group (its workers) must exit once the run is gone."""
        end = time.monotonic() + grace
        while (left := live(lambda st: st[2] == pgid)) and time.monotonic() < end:
            time.sleep(0.2)
        if left:
            self.d.c.hangs += 1
            self.d.say(self.case, f"{self.name}: {len(left)} worker(s) still running {grace:.0f} s "
                       "after the run ended: a hang; killed")
            for pid in left:
                os.kill(pid, signal.SIGKILL)

    def finish(self) -> None:
        """Resume until the run ends by itself (a second failure in a row gives up)."""
        for _ in range(2):
            proc = self.start()
            if not self.wait(proc, self.d.args.limit):
                self.hung(proc)
                return
            if self.ended(proc) == 0:
                return

    def size(self, name: str) -> int:
        return len(read(self.out / name))

    def ids(self) -> list[str]:
        return [r["id"] for name in DECIDED for r in complete_lines(self.out / name) if "id" in r]

    def observe(self) -> None:
        self.seen |= set(self.ids()) | {r["id"] for r in complete_lines(self.out / "journal.jsonl")}

    def progress(self) -> str:
        return f"{len(set(self.ids()))} decided, {len(self.seen)} seen"

    def run_json(self) -> dict:
        return json_or_none(read(self.out / "run.json")) or {}

    def status(self) -> str | None:
        return self.run_json().get("status")

    def check(self) -> None:
        self.observe()
        ids = self.ids()
        dups = len(ids) - len(set(ids))
        attempted = {f"r{int(r)}-{n:06d}" for r, fig in (self.run_json().get("rounds") or {}).items()
                     for n in range(1, int(fig.get("attempts", 0)) + 1)}
        status = self.status()  # a complete run keeps the candidates it did not need: not lost
        journaled = {r["id"] for r in complete_lines(self.out / "journal.jsonl") if "id" in r}
        kept = sorted(journaled - set(ids)) if status == "complete" else []
        lost = sorted((self.seen | attempted) - set(ids) - set(kept))
        c = self.d.c
        c.duplicated += dups
        c.lost += len(lost) + (status not in FINAL)
        self.d.say(self.case, f"{self.name}: final status {status}; {len(set(ids))} decided in "
                   f"{self.starts} start(s); lost {len(lost)}{' ' + ','.join(lost[:5]) if lost else ''}; "
                   f"duplicated {dups}; kept undecided in the journal {len(kept)}", status=status,
                   decided=len(set(ids)), lost=lost, duplicated=dups, kept=kept)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="GGUF file (default: the embedded SmolLM2-135M)")
    ap.add_argument("--json", type=Path, help="also write the counts and every event here")
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs of the gra-local process")
    ap.add_argument("--min-delay", type=float, default=0.5, help="earliest kill after a start (s)")
    ap.add_argument("--max-delay", type=float, default=12.0, help="latest kill after a start (s)")
    for name, default in (("samples", 3), ("max-attempts", 8), ("batch", 2), ("seed-pool", 6)):
        ap.add_argument(f"--{name}", type=int, default=default, help="passed to gra-local run")
    ap.add_argument("--fsize-kib", type=int, default=16, help="the disk-full cases' file size limit")
    ap.add_argument("--limit", type=float, default=600, help="seconds a run may take before it is a hang")
    ap.add_argument("--seed", type=int, default=1, help="kill points and the runs' --seed derive from it")
    ap.add_argument("--no-worker-faults", dest="worker_faults", action="store_false",
                    help="leave out SIGSTOP, SIGSEGV and disk-full")
    ap.add_argument("--work", type=Path, help="keep the run directories here (default: a temp dir)")
    args = benchlib.parse_args(ap, {"kills": 3, "samples": 1, "max_attempts": 3, "seed_pool": 4,
                                    "worker_faults": False, "limit": 300},
                               "3 kills of a 3-attempt run, no worker faults nor disk-full")
    benchlib.private_user_dirs("gra-drill-home-")
    model = benchlib.resolve_model(args.model)
    if model is None or not Path("/proc/self/stat").exists():
        print("" if model is None else "fault_drill needs Linux (/proc)", file=sys.stderr)
        return 2
    tmp = tempfile.TemporaryDirectory(prefix="gra-drill-")
    work = args.work or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    drill = Drill(args, work, model)
    print(f"fault drill: model {model.name}, {args.kills} kills"
          f"{', sigstop, sigsegv, disk-full at start and mid-run' if args.worker_faults else ''}; "
          f"runs in {work}{'; dedup off (no embedder)' if drill.dedup else ''}", flush=True)
    start = time.perf_counter()
    drill.kills(args.kills)
    if args.worker_faults:
        drill.worker_fault("sigstop", signal.SIGSTOP)
        drill.worker_fault("sigsegv", signal.SIGSEGV)
        drill.disk_full(mid_run=False)
        drill.disk_full(mid_run=True)
    c = drill.c
    print(f"{drill.episodes} run directories, {time.perf_counter() - start:.0f} s; "
          f"{len(c.problems)} problem(s)")
    benchlib.save_json(args.json, {"counts": {k: v for k, v in asdict(c).items()
                                              if k not in ("problems", "events")},
                                   "problems": c.problems, "events": c.events,
                                   "args": {k: str(v) for k, v in vars(args).items()}})
    print(f"faults={c.faults} lost={c.lost} duplicated={c.duplicated} tracebacks={c.tracebacks} hangs={c.hangs}")
    tmp.cleanup()
    return 0 if not (c.lost or c.duplicated or c.tracebacks or c.hangs or c.problems) else 1


if __name__ == "__main__":
    sys.exit(main())
