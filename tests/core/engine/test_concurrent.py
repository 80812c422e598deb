"""run_groups: every thread joined before it returns or raises; the first real error wins
over a stop, a stop is raised once, a Ctrl-C on the calling thread stops the groups first.
(The stage-level behaviour is in test_waves_concurrent.py.)"""

from __future__ import annotations

import threading

import pytest

from gra_local.core.engine.concurrent import SERIAL, Aborted, Gate, run_groups

WAIT_S = 10.0


class Stop(Exception):
    """Stands for waves.Stopped."""


def waits_for_abort(gate: Gate, seen: list[str], name: str):
    def run() -> None:
        assert gate.abort is not None
        assert gate.abort.wait(WAIT_S), f"{name} was never aborted"
        seen.append(name)
        raise Aborted

    return run


def alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("gra-group-")]


def test_an_error_on_the_calling_thread_aborts_the_groups_and_is_raised_after_the_join() -> None:
    gate, seen = Gate(concurrent=True), []

    def local() -> None:
        raise KeyboardInterrupt  # a Ctrl-C while the local models run

    with pytest.raises(KeyboardInterrupt):
        run_groups(gate, local, [("r1", waits_for_abort(gate, seen, "r1")),
                                 ("r2", waits_for_abort(gate, seen, "r2"))], quiet=Stop)
    assert sorted(seen) == ["r1", "r2"] and not alive()


def test_the_first_real_error_wins_over_a_stop_and_a_stop_is_raised_once() -> None:
    gate = Gate(concurrent=True)
    stopped = threading.Event()

    def stops() -> None:
        stopped.set()
        raise Stop("first")

    def fails() -> None:
        assert stopped.wait(WAIT_S)
        raise ValueError("then this")

    with pytest.raises(ValueError, match="then this"):
        run_groups(gate, fails, [("r1", stops)], quiet=Stop)
    assert not alive()

    gate, seen = Gate(concurrent=True), []
    with pytest.raises(Stop) as err:
        run_groups(gate, lambda: (_ for _ in ()).throw(Stop("local")),
                   [("r1", waits_for_abort(gate, seen, "r1"))], quiet=Stop)
    assert str(err.value) == "local" and seen == ["r1"] and not alive()


def test_groups_that_finish_return_quietly() -> None:
    gate, done = Gate(concurrent=True), []
    run_groups(gate, lambda: done.append("local"),
               [(n, lambda n=n: done.append(n)) for n in ("r1", "r2")], quiet=Stop)
    assert sorted(done) == ["local", "r1", "r2"] and gate.abort is not None
    assert not gate.abort.is_set() and not alive()


def test_a_partial_is_skipped_while_another_group_holds_the_lock() -> None:
    gate = Gate(concurrent=True)
    with SERIAL.held_if_free() as free:
        assert free  # the serial gate has no lock: always free
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.held():
            holding.set()
            release.wait(WAIT_S)

    other = threading.Thread(target=hold)
    other.start()
    assert holding.wait(WAIT_S)
    with gate.held_if_free() as free:
        assert not free
    release.set()
    other.join()
    with gate.held_if_free() as free:
        assert free and gate.lock is not None and gate.lock.locked()
    assert gate.lock is not None and not gate.lock.locked()
