"""The thread governor: the safe count while other processes use the CPU, every core
once they have left it idle for a second, back at once when they return."""

from __future__ import annotations

import os

import pytest

from gra_local.backends.llama import threads
from gra_local.backends.llama.threads import ThreadGovernor


def test_default_and_max_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    for cores, safe, most in [(1, 1, 1), (2, 1, 2), (4, 3, 4), (8, 4, 4), (16, 8, 8)]:
        monkeypatch.setattr(os, "cpu_count", lambda n=cores: n)
        assert (threads.default_threads(), threads.max_threads()) == (safe, most)


def test_the_governor_goes_up_when_quiet_and_down_at_once_when_busy() -> None:
    applied: list[int] = []
    gov = ThreadGovernor(1, 2, applied.append)
    assert gov.decide(0.0, now=10.0) == 1  # quiet, but not for long enough yet
    assert gov.decide(0.1, now=10.6) == 1
    assert gov.decide(0.2, now=11.0) == 2  # a second of quiet
    gov.current = 2
    assert gov.decide(0.9, now=11.5) == 1  # someone else runs: drop at once
    gov.current = 1
    assert gov.decide(0.0, now=12.0) == 1  # the quiet second starts again
    assert gov.decide(0.0, now=13.1) == 2


def test_others_is_the_machine_minus_this_process() -> None:
    gov = ThreadGovernor(1, 2, lambda n: None)
    if not gov.active:
        pytest.skip("no /proc/stat here")
    gov._last = (100.0, 50.0, 20.0)
    # in 2 s the machine was busy 3 core-seconds, 2 of them ours: others used 0.5 core
    assert gov.others(102.0, 53.0, 22.0) == pytest.approx(0.5)
    assert gov.others(103.0, 53.5, 22.5) == pytest.approx(0.0)


def test_a_pinned_count_is_never_changed() -> None:
    applied: list[int] = []
    gov = ThreadGovernor(3, 3, applied.append)
    assert not gov.active
    gov.tick()
    assert applied == [] and gov.current == 3


def test_tick_switches_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[int] = []
    gov = ThreadGovernor(1, 2, applied.append)
    if not gov.active:
        pytest.skip("no /proc/stat here")
    clock = iter([100.0, 101.2, 102.4, 102.7])
    busy = iter([10.0, 10.1, 12.2])  # quiet, quiet, then others busy (ours is fixed)
    monkeypatch.setattr(threads, "_now", lambda: next(clock))
    monkeypatch.setattr(threads, "_cpu_busy_seconds", lambda: next(busy))
    monkeypatch.setattr(threads, "_own_seconds", lambda: 5.0)
    gov._last = (99.0, 10.0, 5.0)
    gov.tick()  # 100.0: quiet starts
    gov.tick()  # 101.2: quiet for 1.2 s: up
    assert applied == [2]
    gov.tick()  # 102.4: others used 2.1 cores over 1.2 s: down
    assert applied == [2, 1] and gov.switches == 2
    gov.tick()  # 102.7: too soon to look again
    assert applied == [2, 1]
