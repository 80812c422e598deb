"""The runner under every stage: each task is a step generator, and a model gets all of its
tasks' calls at once.

A task is a coroutine over a candidate (or a seed): it yields a `ChatRequest`, receives its
`ChatResult` (`result = yield request`), and returns when it has nothing more to ask.
`run_tasks` groups a stage's tasks by model (the model still loaded first, as
`ModelPool.order` says) and runs each model's tasks in waves: every live task's next
request goes into one `Session.chat_many`, each result goes back to its task in task
order, and the tasks' next requests (a retry, a generator's answer after its draft) make
the next wave, until all of that model's tasks are done. Requests keep the order the
tasks were created in (candidate order), so the same inputs send the same requests in the
same order.

A stop cancels the wave in flight: a wave with a cancelled result is abandoned whole (no
result of it reaches a task, so nothing of it is recorded or journaled) and `Stopped` is
raised; a resume redoes those calls with the same seeds. A pause also cancels the wave in
flight, holds, then sends again only the requests that did not finish; the wave's results
are handed out only once all of them are in, so a paused run gives what an unpaused one does.

Endpoint models (`ModelSpec.is_endpoint`: a server does the work) run at the same time as
the rest: each endpoint model's group in a thread of its own, beside the local models'
groups, which still run one after another on the calling thread (concurrent.py: one stage
lock serializes everything but the model calls, and a stop or an error in any group
cancels every wave in flight). A stage whose models are all local runs exactly as above.
With endpoint models, the order in which results of different models are applied depends
on which server answers first (servers are not deterministic anyway), and an endpoint
model's tasks look at their candidates when the stage starts, not after the local models.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from gra_local.core.backend import ChatRequest, ChatResult, Session
from gra_local.core.candidate import Candidate
from gra_local.core.config import Registry
from gra_local.core.engine.concurrent import SERIAL, Aborted, Gate, run_groups
from gra_local.core.engine.model_pool import ModelPool
from gra_local.core.errors import BackendError, ModelDown, WorkerLost
from gra_local.core.events import EventSink, Generating, StageProgress, StageStarted
from gra_local.core.options import RunOptions
from gra_local.core.quality.decision import PENDING, Decision, Reached
from gra_local.core.stats import RunStats

Steps = Generator[ChatRequest, ChatResult, None]
"""A task: yields its requests one at a time, is sent each one's result."""

CANCELLED = "cancelled"
INTERRUPT_POLL_SECONDS = 0.02


class Stopped(Exception):
    """The user asked to stop; raised between two waves of model calls."""


@dataclass
class StageContext:
    options: RunOptions
    registry: Registry
    pool: ModelPool
    stats: RunStats
    emit: EventSink
    stop: threading.Event
    snapshot: Callable[[Candidate], None]
    round: int = 1
    pause: threading.Event | None = None
    """While set, the run holds: the wave in flight is cut short and resumed after it."""
    live_text: bool = False
    """Ask backends for partial text and emit it as Generating events (the TUI's live view)."""
    decide: Callable[[Candidate, Reached], Decision] = lambda cand, reached: PENDING
    """The run's decision (core.quality.decision) over the evidence so far, under the
    run's current calibration: what a step asks when a verdict may settle its sample."""

    def checkpoint(self, abort: threading.Event | None = None) -> None:
        """Between two waves: wait while paused, stop when asked; `Aborted` once `abort`
        (another group of the stage failed) is set."""
        while self.pause is not None and self.pause.is_set() and not self.stop.is_set() \
                and not (abort is not None and abort.is_set()):
            time.sleep(0.05)
        if self.stop.is_set():
            raise Stopped
        if abort is not None and abort.is_set():
            raise Aborted


@dataclass
class Task:
    model: str
    steps: Steps
    calls: int = 1
    """Calls the task expects to make (the stage's progress total); retries add to it."""
    asked: int = 0
    """Requests it has sent: a retry beyond `calls` grows the total as it is sent."""
    made: int = 0
    cand: Candidate | None = None
    """The candidate it works on (None: a seed's annotation): left undecided, `faulted`, when
    the task's model is dropped before answering it."""


class _Progress:
    """Done and total calls of a stage: a retry grows the total, a skipped step shrinks it.
    While a wave runs, each result its session reports (`on_result`) moves the count at
    once, and between results the share of the running calls' token budgets made
    (`on_progress`, a local worker's tick) moves it by a fraction; the wave's results are
    then counted for good when it returns (`called`). What is shown never goes back."""

    def __init__(self, ctx: StageContext, stage: str, tasks: list[Task]) -> None:
        self.ctx, self.stage = ctx, stage
        self.done, self.total = 0, sum(t.calls for t in tasks)
        self.tokens = 0
        self._in_wave: dict[str, int] = {}
        self._running: dict[str, tuple[float, int]] = {}  # model: (share, tokens) in flight
        self._shown = (0, self.total, 0, 0.0)
        self._lock = threading.Lock()  # results come from each group's thread

    def wave(self, model: str) -> None:
        """A wave of `model` starts (again, after a lost worker): none of it is done yet."""
        with self._lock:
            self._in_wave[model] = 0
            self._running.pop(model, None)

    def result(self, model: str, tokens: int) -> None:
        """One result of `model`'s running wave came back."""
        with self._lock:
            self._in_wave[model] = self._in_wave.get(model, 0) + 1
            self.tokens += tokens
            self._running.pop(model, None)  # its share is counted whole now; the next tick says the rest
            self._emit(model)

    def running(self, model: str, share: float, tokens: int) -> None:
        """`model`'s running calls have made `share` of their token budgets, `tokens` so far."""
        with self._lock:
            self._running[model] = (share, tokens)
            self._emit(model)

    def asked(self, task: Task) -> None:
        """The task sends a request: one beyond its expected calls (a retry) is counted in
        the total now, so that the bar has room for it while it runs."""
        with self._lock:
            task.asked += 1
            if task.asked > task.calls:
                self.total += 1

    def called(self, task: Task) -> None:
        with self._lock:
            task.made += 1
            self.done += 1
            self._in_wave[task.model] = max(0, self._in_wave.get(task.model, 0) - 1)
            self._running.pop(task.model, None)
            self._emit(task.model)

    def _emit(self, model: str) -> None:
        done = min(self.done + sum(self._in_wave.values()), self.total)
        level = min(done + sum(share for share, _ in self._running.values()), self.total)
        tokens = self.tokens + sum(n for _, n in self._running.values())
        _, _, last_tokens, last_level = self._shown
        shown = (done, self.total, max(tokens, last_tokens), round(max(level, last_level), 2))
        if shown != self._shown:  # a wave's results counted for good move nothing already shown
            self._shown = shown
            self.ctx.emit(StageProgress(self.ctx.round, self.stage, shown[0], shown[1], model,
                                        shown[2], max(0.0, shown[3] - shown[0])))

    def finished(self, task: Task) -> None:
        """The task makes no more calls: it counts for those it made."""
        with self._lock:
            self.total -= max(task.calls, task.asked) - task.made


def run_tasks(ctx: StageContext, stage: str, tasks: list[Task]) -> None:
    """Run tasks grouped by model, the already-loaded model first, each model's calls in
    waves, requests in task order; endpoint models' groups beside the local ones."""
    if not tasks:
        return
    groups: dict[str, list[Task]] = {}
    for task in tasks:
        groups.setdefault(task.model, []).append(task)
    progress = _Progress(ctx, stage, tasks)
    ctx.emit(StageStarted(ctx.round, stage, progress.total))
    start = time.perf_counter()
    order = ctx.pool.order(list(groups))
    remote = [m for m in order if ctx.registry.get(m).is_endpoint]
    try:
        if not remote or len(order) == 1:
            for model in order:
                _run_model(ctx, stage, model, groups[model], progress, SERIAL)
        else:
            gate = Gate(concurrent=True)
            local = [m for m in order if m not in remote]

            def run_local() -> None:
                for model in local:
                    _run_model(ctx, stage, model, groups[model], progress, gate)

            run_groups(gate, run_local,
                       [(m, partial(_run_model, ctx, stage, m, groups[m], progress, gate))
                        for m in remote], quiet=Stopped)
    finally:
        ctx.stats.stage(stage).seconds += time.perf_counter() - start


def _advance(task: Task, result: ChatResult | None, progress: _Progress) -> ChatRequest | None:
    """The task's next request, or None once it is done."""
    try:
        request = next(task.steps) if result is None else task.steps.send(result)
    except StopIteration:
        progress.finished(task)
        return None
    progress.asked(task)
    return request


def _run_model(ctx: StageContext, stage: str, model: str, tasks: list[Task],
               progress: _Progress, gate: Gate) -> None:
    """The model's tasks in waves; everything but the model calls under the gate's lock."""
    ctx.checkpoint(gate.abort)
    # Each task looks at its candidate only now, after the models before it have run (a
    # sample one reviewer failed is not sent to the next); a model with nothing to do is
    # not loaded.
    with gate.held():
        pending = [(t, r) for t in tasks if (r := _advance(t, None, progress)) is not None]
    first = True
    while pending:
        requests = [request for _, request in pending]
        if first:  # the stage starts from an empty prompt cache: reproducible (ChatRequest.fresh_cache)
            requests[0] = requests[0].model_copy(update={"fresh_cache": True})
        try:
            with gate.held():
                if ctx.pool.dropped(model):
                    _leave(ctx, model, [t for t, _ in pending], progress)
                    return
                session = _session(ctx, stage, model, gate, progress)
            progress.wave(model)
            try:
                results = _wave(ctx, session, requests, gate)
            finally:
                if hasattr(session, "on_result"):  # a later call of another stage is not ours
                    session.on_result = None
                if hasattr(session, "on_progress"):
                    session.on_progress = None
            first = False
        except WorkerLost as exc:
            if ctx.stop.is_set():
                raise Stopped from None  # a stop killed it, or it died meanwhile: resume redoes the wave
            with gate.held():  # a fault, never a verdict: the same calls again, on a fresh
                ctx.pool.lost(model, exc)  # worker, until the model is dropped
            continue
        except BackendError as exc:  # name the step: the worker knows only the request
            raise BackendError(f"{stage} with {model}: {exc}") from None
        with gate.held():  # the whole wave at once: no other group sees half of it
            following = []
            for (task, _), result in zip(pending, results, strict=True):
                progress.called(task)
                request = _advance(task, result, progress)
                if request is not None:
                    following.append((task, request))
        pending = following


def _session(ctx: StageContext, stage: str, model: str, gate: Gate, progress: _Progress) -> Session:
    """The model's session, loaded if need be, its results reported to `progress` as they
    come. What a failed load means is the pool's to say (`ModelPool.session`): a reload
    after a lost worker that fails raises WorkerLost, which the caller counts as one more
    loss."""
    session = ctx.pool.session(model)
    if ctx.live_text and hasattr(session, "on_partial"):
        session.on_partial = partial(_emit_partial, ctx, gate, model, stage)
    if hasattr(session, "on_result"):
        session.on_result = lambda _index, tokens: progress.result(model, tokens)
    if hasattr(session, "on_progress"):
        session.on_progress = lambda share, tokens: progress.running(model, share, tokens)
    return session


def _leave(ctx: StageContext, model: str, tasks: list[Task], progress: _Progress) -> None:
    """The model was dropped with these tasks unanswered: a fault, never a verdict. Their
    candidates are left undecided (`faulted`: the journal keeps them as they were, and a
    rerun finishes them); a seed's annotation cannot wait, so the run stops (ModelDown)."""
    why = ctx.pool.drop_reason(model)
    if any(t.cand is None for t in tasks):
        raise ModelDown(f"model {model!r} was dropped ({why}) before it annotated every seed; "
                        "the run stopped: rerun the same command to resume")
    for task in tasks:
        task.steps.close()  # nothing of the unanswered call reaches the candidate
        progress.finished(task)
        assert task.cand is not None
        task.cand.faulted = f"model {model!r} was dropped ({why})"


def _wave(ctx: StageContext, session: Session, requests: list[ChatRequest],
          gate: Gate) -> list[ChatResult]:
    """The results of one wave, in request order; raises Stopped (Aborted: another group
    failed), with nothing handed out, when that cut the wave short."""
    results: list[ChatResult | None] = [None] * len(requests)
    while True:
        todo = [i for i, result in enumerate(results) if result is None]
        if not todo:
            return [result for result in results if result is not None]
        ctx.checkpoint(gate.abort)
        with _interrupt(ctx, gate.abort) as cancel:
            got = session.chat_many([requests[i] for i in todo], cancel=cancel)
        if len(got) != len(todo):
            raise BackendError(f"{session.info.name}: chat_many answered {len(got)} of "
                               f"{len(todo)} requests")
        cut = False
        for i, result in zip(todo, got, strict=True):
            if result.finish_reason == CANCELLED:
                cut = True
            else:
                results[i] = result
        if cut and ctx.stop.is_set():
            raise Stopped  # the wave is abandoned: a resume redoes all of it
        if cut and gate.abort is not None and gate.abort.is_set():
            raise Aborted
        if cut and not cancel.is_set():
            raise RuntimeError(f"{session.info.name}: chat_many cancelled requests "
                               "without being asked to")


@contextmanager
def _interrupt(ctx: StageContext, abort: threading.Event | None) -> Iterator[threading.Event]:
    """The event a wave's `chat_many` watches: the stop itself, or, where the run can be
    paused or another group can fail (`abort`), an event a watcher thread sets on any."""
    pause = ctx.pause
    if pause is None and abort is None:
        yield ctx.stop
        return
    cancel, over = threading.Event(), threading.Event()
    events = [e for e in (ctx.stop, pause, abort) if e is not None]

    def watch() -> None:
        while not over.wait(INTERRUPT_POLL_SECONDS):
            if any(e.is_set() for e in events):
                cancel.set()
                return

    watcher = threading.Thread(target=watch, name="wave-interrupt", daemon=True)
    watcher.start()
    try:
        yield cancel
    finally:
        over.set()
        watcher.join()


def _emit_partial(ctx: StageContext, gate: Gate, model: str, stage: str, text: str) -> None:
    with gate.held_if_free() as free:
        if free:  # else skipped: another group is emitting, and the next partial comes soon
            ctx.emit(Generating(model, stage, text))
