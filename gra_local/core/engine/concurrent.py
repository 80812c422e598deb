"""A stage's model groups at the same time: each endpoint model's group in a worker thread
of its own, the local models' groups one after another on the calling thread (they share
this machine's memory and cores), all joined before `run_groups` returns or raises.

One lock per stage, the `Gate`, makes this safe with no other change to the steps: a
group holds it whenever it touches shared state — advancing its tasks' step generators
(which mutate candidates, count stats, journal snapshots and emit events), progress, the
model pool (loads, losses) — and lets go of it only while its wave is at the model
(`Session.chat_many`) or while it waits at a pause. So no two threads ever run engine
code at once, and a wave's results are applied whole within one hold: another group
sees a candidate before or after a wave, never halfway. Loads happen under the lock too:
a group waiting for it only delays applying its finished wave, its calls in flight go on.

A failure in one group (an exception, or a stop cut its wave short) sets the gate's
`abort`: every other group's wave in flight is cancelled and abandoned whole (`Aborted`),
and once every thread is joined the calling thread raises the first real error, or else
the stop (`Stopped`), once. A Ctrl-C on the calling thread does the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Aborted(Exception):
    """Another group of the stage failed: this one stops without applying its wave."""


class Gate:
    """What a stage's groups share; the serial gate (`SERIAL`) has no lock and no abort, so
    a stage of local models only runs exactly as it always has."""

    def __init__(self, concurrent: bool) -> None:
        self.lock = threading.Lock() if concurrent else None
        self.abort = threading.Event() if concurrent else None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the stage lock (a no-op for the serial gate)."""
        if self.lock is None:
            yield
            return
        with self.lock:
            yield

    @contextmanager
    def held_if_free(self) -> Iterator[bool]:
        """Hold the lock if no one else does: for what may be skipped (live partial text,
        emitted from inside a wave, would otherwise stall the model's decode)."""
        if self.lock is None:
            yield True
            return
        got = self.lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                self.lock.release()


SERIAL = Gate(concurrent=False)

Group = tuple[str, Callable[[], None]]
"""A name (for the thread) and what runs the group."""


def run_groups(gate: Gate, local: Callable[[], None], remote: list[Group],
               quiet: type[BaseException]) -> None:
    """Run each `remote` group in a thread and `local` on this thread, join every thread,
    and raise the first error that is not `Aborted` nor `quiet` (the stop), else the
    first `quiet` one."""
    assert gate.abort is not None, "run_groups needs a concurrent gate"
    abort = gate.abort
    errors: list[BaseException] = []

    def failed(exc: BaseException) -> None:
        errors.append(exc)  # atomic under the GIL; read only after every thread is joined
        abort.set()

    def guarded(run: Callable[[], None]) -> None:
        try:
            run()
        except BaseException as exc:  # handed to the calling thread below
            failed(exc)

    started: list[threading.Thread] = []
    try:
        for name, run in remote:
            thread = threading.Thread(target=guarded, args=(run,), name=f"gra-group-{name}",
                                      daemon=True)
            thread.start()
            started.append(thread)
        guarded(local)
    except BaseException as exc:  # a thread that would not start; a Ctrl-C meanwhile
        failed(exc)
    finally:
        for thread in started:
            while thread.is_alive():
                try:
                    thread.join()
                except BaseException as exc:  # a Ctrl-C while waiting: the groups stop first
                    failed(exc)
    real = [e for e in errors if not isinstance(e, (Aborted, quiet))]
    stops = [e for e in errors if isinstance(e, quiet)]
    if real:
        raise real[0]
    if stops:
        raise stops[0]
    if errors:  # Aborted with no cause cannot happen: abort is set only by a failure
        raise RuntimeError("a stage's group was aborted with no failure to report")
