#!/usr/bin/env python3
"""Benchmark: the TUI's time to first frame and its longest event-loop stall during a run.

First frame: `gra-local app --screen new_run` is started in a pseudo-terminal of 120×40, as
a user's terminal starts it, and timed from the spawn to the first output that shows New
run's form (its "Start run" button, drawn in the same frame as the rest of the form); the
process is then killed. An installed copy has its modules compiled to bytecode, so the
counted starts read theirs from a private PYTHONPYCACHEPREFIX that one uncounted start
fills. Where this environment sets PYTHONDONTWRITEBYTECODE (every start then compiles
gra_local's own sources again), starts as the environment makes them are timed too.
Median and range over --starts (7; --quick: 2). `--against DIR` times another checkout's
app alternately with this one's and prints the ratio. Needs a POSIX pseudo-terminal.

Stalls: the app runs headless (Textual's test driver) on the New run screen, a real run is
started (llama.cpp worker processes; the tiny test GGUF by default, `--model PATH` for
another) and the event loop is sampled every 10 ms: a stall is a tick that came late.
Stalls before the engine starts (seed and model checks, the dashboard's first mount) are
printed apart; the last line is `max_stall_ms=<n>` over the time the run is going.

The app saves what a run was started with to settings.toml: config, cache and data dirs
are private temporary ones (benchlib.private_user_dirs), so the user's New run screen
never opens on this bench's last run. `--quick` (CI) watches the run for 3 s instead
of 15 and keeps llama.cpp to one thread.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import select
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))

import benchlib  # noqa: E402

from gra_local.core.options import RunOptions  # noqa: E402
from gra_local.tui.settings import Settings, save_settings  # noqa: E402

TICK = 0.01
QUICK_SECONDS = 3.0
SIZE = (120, 40)
FORM_DRAWN = b"Start run"
"""Text of New run's first frame (its button and its key in the footer)."""
ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
                     rb"|\x1b[()][0-9A-Za-z]|\x1b[=>78cDEHM]")
"""Terminal control sequences, removed before looking for the form's text."""
NO_FRAME_S = 30.0


def app_command(models: Path, module: bool = False) -> list[str]:
    """The `gra-local` command a user runs (the console script beside this Python, else, or
    with `module`, `python -m gra_local.cli`), opening New run."""
    script = Path(sys.executable).with_name("gra-local")
    use_script = script.is_file() and not module
    head = [str(script)] if use_script else [sys.executable, "-m", "gra_local.cli"]
    return [*head, "app", "--screen", "new_run", "--models", str(models)]


def first_frame(argv: list[str], env: dict[str, str], cwd: Path = REPO) -> float:
    """Seconds from spawning `argv` (in `cwd`) in a pseudo-terminal to its first frame of
    New run."""
    import fcntl
    import pty
    import struct
    import termios

    start = time.perf_counter()
    pid, master = pty.fork()
    if pid == 0:  # the child: its terminal is the pty's other end
        try:
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
            os.chdir(cwd)  # `python -m` puts the working folder first on sys.path
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    seen = b""
    try:
        while (left := start + NO_FRAME_S - time.perf_counter()) > 0:
            if not select.select([master], [], [], left)[0]:
                break
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the app exited and closed its terminal
                break
            if not chunk:
                break
            seen += chunk
            if FORM_DRAWN in ESCAPES.sub(b"", seen):
                return time.perf_counter() - start
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(master)
    shown = ESCAPES.sub(b"", seen).decode("utf-8", "replace")[-2000:]
    raise SystemExit(f"bench_tui: no first frame of New run within {NO_FRAME_S:.0f} s of "
                     f"`{' '.join(argv)}`; its terminal showed:\n{shown}")


def first_frames(models: Path, starts: int, work: Path, against: Path | None) -> dict[str, list[float]]:
    """Seconds to the first frame per start, per kind of start: with bytecode cached (as
    installed), and as this environment starts Python where it turns bytecode off; with
    `against` (another checkout), this tree's and that one's, both as `python -m` with
    their folder first on PYTHONPATH and their own bytecode cache."""
    env = {**os.environ, "TERM": "xterm-256color"}
    for name in ("COLUMNS", "LINES"):
        env.pop(name, None)

    def cached(name: str, tree: Path = REPO) -> dict[str, str]:
        out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        out["PYTHONPYCACHEPREFIX"] = str(work / f"pycache-{name}")
        if against is not None:
            out["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
        return out

    if against is None:
        kinds = {"bytecode cached": (app_command(models), cached("this"), REPO)}
        if env.get("PYTHONDONTWRITEBYTECODE"):
            kinds["as this environment starts (PYTHONDONTWRITEBYTECODE set)"] = (
                app_command(models), env, REPO)
    else:
        kinds = {"this tree": (app_command(models, module=True), cached("this"), REPO),
                 f"{against}": (app_command(models, module=True), cached("against", against), against)}
    for argv, kind_env, cwd in kinds.values():
        if "PYTHONPYCACHEPREFIX" in kind_env:  # uncounted: fills the private bytecode cache
            first_frame(argv, kind_env, cwd)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(starts):  # the kinds alternate, so that a slow spell hits each
        for kind, (argv, kind_env, cwd) in kinds.items():
            times[kind].append(first_frame(argv, kind_env, cwd))
    return times


async def measure(app_models: Path, seconds: float, settings: Settings) -> tuple[float, int]:
    from gra_local.tui.app import GraApp
    from gra_local.tui.services import Services

    app = GraApp(Services(models_file=app_models, settings=settings), start="new_run")
    ticks = 0
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        last_tick = start = loop.time()
        stalls: list[tuple[float, float, bool]] = []  # (stall, when, engine running)
        while loop.time() < end:
            await asyncio.sleep(TICK)
            now = loop.time()
            running = app.current_run is not None and app.current_run.running
            stalls.append((now - last_tick - TICK, now - start, running))
            last_tick = now
            ticks += 1
        before = [s for s, _, running in stalls if not running]
        during = [s for s, _, running in stalls if running]
        print(f"checks before the run (Start pressed, dashboard shown): max stall "
              f"{max(before, default=0) * 1000:.0f} ms")
        for stall, at, running in sorted(stalls, reverse=True)[:3]:
            print(f"stall {stall * 1000:.0f} ms at {at:.2f} s after Start"
                  f"{'' if running else ' (before the engine started)'}")
        if app.current_run is not None:
            app.current_run.stop.set()
            while not app.current_run.finished:
                await asyncio.sleep(0.05)
    return max(during, default=0.0) * 1000, ticks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="GGUF to run (default: the tiny test model)")
    ap.add_argument("--seconds", type=float, default=15.0, help="how long to watch the run")
    ap.add_argument("--starts", type=int, default=7, help="app starts timed to their first frame")
    ap.add_argument("--against", type=Path, metavar="DIR",
                    help="time the first frame of another checkout's app too (alternately), "
                         "and print this tree's time over its")
    ap.add_argument("--no-spare-core", action="store_true",
                    help="let llama.cpp use every core (the app's spare_core setting off)")
    args = benchlib.parse_args(ap, {"seconds": QUICK_SECONDS, "starts": 2},
                               f"watch the run {QUICK_SECONDS:.0f} s, llama.cpp on one thread, "
                               "2 starts")
    n_threads = 1 if args.quick else None  # spinning threads crawl on a shared CI machine
    benchlib.private_user_dirs()
    with tempfile.TemporaryDirectory(prefix="gra-bench-tui-") as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            from ggufs import write_tiny_gguf

            model = write_tiny_gguf(work / "tiny.gguf")
        models = work / "models.toml"
        threads = f"n_threads = {n_threads}\n" if n_threads else ""
        models.write_text(f'[[models]]\nname = "bench"\npath = "{model}"\n{threads}', encoding="utf-8")
        last = RunOptions(samples=1000, max_attempts=1000, dedup_threshold=None)
        settings = Settings(last_seeds=str(REPO / "gra_local" / "data" / "example_seeds.jsonl"),
                            last_out_dir=str(work / "out"), last_run=last,
                            spare_core=not args.no_spare_core)
        save_settings(settings)  # the started apps open New run on it, as the user's last run
        if sys.platform == "win32":
            print("first frame: not timed here (it needs a POSIX pseudo-terminal)")
        else:
            frames = first_frames(models, args.starts, work, args.against)
            for kind, times in frames.items():
                shown = ", ".join(f"{t * 1000:.0f}" for t in times)
                print(f"first frame, {kind}: median {benchlib.median(times) * 1000:.0f} ms "
                      f"after the spawn ({len(times)} starts: {shown} ms)")
            if args.against is not None:
                ours, theirs = (benchlib.median(t) for t in frames.values())
                print(benchlib.figure_line("first_frame_ratio", benchlib.ratio(ours, theirs)[0],
                                           extra=f"(this tree over {args.against})"))
        stall, ticks = asyncio.run(measure(models, args.seconds, settings))
    print(f"event loop sampled {ticks} times over {args.seconds:.0f} s of a running job")
    print(f"max_stall_ms={stall:.0f}  (while the run is going)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
