#!/usr/bin/env python3
"""Benchmark: the TUI's time to first frame and its longest event-loop stall during a run.

Starts the app headless (Textual's test driver) on the New run screen, measures the time
from process start to the first rendered frame, then starts a real run (llama.cpp worker
processes; the tiny test GGUF by default, `--model PATH` for another) and samples the
event loop every 10 ms: a stall is a tick that came late. Stalls before the engine starts
(seed and model checks, the dashboard's first mount) are printed apart; the last line is
`max_stall_ms=<n>` over the time the run is going.

The app saves what a run was started with to settings.toml: config, cache and data dirs
are private temporary ones (benchlib.private_user_dirs), so the user's New run screen
never opens on this bench's last run. `--quick` (CI) watches the run for 3 s instead
of 15 and keeps llama.cpp to one thread.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from gra_local.core.options import RunOptions  # noqa: E402
from gra_local.tui.app import GraApp  # noqa: E402
from gra_local.tui.services import Services  # noqa: E402
from gra_local.tui.settings import Settings  # noqa: E402

TICK = 0.01
QUICK_SECONDS = 3.0


async def measure(model: Path, seconds: float, work: Path, spare_core: bool,
                  n_threads: int | None = None) -> tuple[float, float, int]:
    models = work / "models.toml"
    threads = f"n_threads = {n_threads}\n" if n_threads else ""
    models.write_text(f'[[models]]\nname = "bench"\npath = "{model}"\n{threads}', encoding="utf-8")
    last = RunOptions(samples=1000, max_attempts=1000, dedup_threshold=None)
    settings = Settings(last_seeds=str(REPO / "gra_local" / "data" / "example_seeds.jsonl"),
                        last_out_dir=str(work / "out"), last_run=last, spare_core=spare_core)
    app = GraApp(Services(models_file=models, settings=settings), start="new_run")
    first_frame = None
    worst = 0.0
    ticks = 0
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        first_frame = time.perf_counter() - T0
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
        worst = max(during, default=0.0)
        if app.current_run is not None:
            app.current_run.stop.set()
            while not app.current_run.finished:
                await asyncio.sleep(0.05)
    return first_frame, worst * 1000, ticks


def main() -> int:
    # The bench's own setup is no part of the app's start: benchlib (it loads modules the
    # app loads only when a run starts), the private dirs, the test model; timed, subtracted.
    t = time.perf_counter()
    sys.path.insert(0, str(REPO / "scripts"))
    import benchlib

    setup = time.perf_counter() - t
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="GGUF to run (default: the tiny test model)")
    ap.add_argument("--seconds", type=float, default=15.0, help="how long to watch the run")
    ap.add_argument("--no-spare-core", action="store_true",
                    help="let llama.cpp use every core (the app's spare_core setting off)")
    args = benchlib.parse_args(ap, {"seconds": QUICK_SECONDS},
                               f"watch the run {QUICK_SECONDS:.0f} s, llama.cpp on one thread")
    n_threads = 1 if args.quick else None  # spinning threads crawl on a shared CI machine
    t = time.perf_counter()
    benchlib.private_user_dirs()
    setup += time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="gra-bench-tui-") as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:  # making the test model (numpy, gguf) is no part of the app's start
            t = time.perf_counter()
            from ggufs import write_tiny_gguf

            model = write_tiny_gguf(work / "tiny.gguf")
            setup += time.perf_counter() - t
        first, stall, ticks = asyncio.run(measure(model, args.seconds, work,
                                                  not args.no_spare_core, n_threads))
        first -= setup
    print(f"first frame: {first * 1000:.0f} ms after process start")
    print(f"event loop sampled {ticks} times over {args.seconds:.0f} s of a running job")
    print(f"max_stall_ms={stall:.0f}  (while the run is going)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
