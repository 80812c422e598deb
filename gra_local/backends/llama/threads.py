"""How many threads llama.cpp decodes with, chosen while it runs from what else the CPU does.

Measured on 2 cores (scripts/bench_decode.py, SmolLM2-135M): idle, 2 threads decode at
103 tok/s and 1 thread at 55; beside one busy process, 2 threads collapse to 21 tok/s
(llama.cpp's threads wait at every barrier for the one that was descheduled) while 1
thread keeps 58. No fixed count wins both, and on a laptop something else often runs.

So a worker starts at the safe count (one core fewer than there are on small machines)
and, where /proc/stat shows what the other processes use, moves to every core once the
others have left the CPU idle for a second, and back at once when they use half a core or
more. `llama_set_n_threads` changes the count between two decode steps; nothing is
reloaded. A pinned `n_threads` (models.toml) or a spared core (the app) is never exceeded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

CHECK_EVERY_S = 0.5
QUIET_FOR_S = 1.0
BUSY_CORES = 0.5
"""Other processes using at least this many cores mean: drop to the safe count."""


def default_threads() -> int:
    """The safe count: one core fewer than there are on small machines (≤ 4 cores), about
    the physical cores (half the logical ones) on larger ones, where hyper-threads slow
    decode down."""
    cores = os.cpu_count() or 1
    return max(1, cores - 1) if cores <= 4 else cores // 2


def max_threads() -> int:
    """Every core on small machines; the physical cores on larger ones."""
    cores = os.cpu_count() or 1
    return cores if cores <= 4 else cores // 2


def _cpu_busy_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine since boot (Linux), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _now() -> float:
    return time.monotonic()


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


class ThreadGovernor:
    """Calls `apply(n)` with a new thread count when the rest of the machine changes."""

    def __init__(self, low: int, high: int, apply: Callable[[int], None]) -> None:
        self.low, self.high, self.apply = low, max(low, high), apply
        self.current = low
        self.switches = 0
        self._quiet_since: float | None = None
        busy = _cpu_busy_seconds()
        self._last = None if busy is None else (_now(), busy, _own_seconds())

    @property
    def active(self) -> bool:
        """False where there is nothing to choose (one count) or no /proc/stat."""
        return self._last is not None and self.high > self.low

    def others(self, now: float, busy: float, own: float) -> float:
        """Cores the other processes used since the last look."""
        assert self._last is not None
        then, busy0, own0 = self._last
        self._last = (now, busy, own)
        return max(0.0, (busy - busy0) - (own - own0)) / max(now - then, 1e-6)

    def decide(self, others: float, now: float) -> int:
        """The count for what the others use now (with the quiet period before going up)."""
        if others >= BUSY_CORES:
            self._quiet_since = None
            return self.low
        if self._quiet_since is None:
            self._quiet_since = now
        return self.high if now - self._quiet_since >= QUIET_FOR_S else self.current

    def tick(self) -> None:
        """Between two decode steps: look (at most every CHECK_EVERY_S) and switch."""
        if not self.active:
            return
        now = _now()
        assert self._last is not None
        if now - self._last[0] < CHECK_EVERY_S:
            return
        busy = _cpu_busy_seconds()
        if busy is None:
            return
        want = self.decide(self.others(now, busy, _own_seconds()), now)
        if want != self.current:
            self.apply(want)
            self.current = want
            self.switches += 1
