"""A whole run: lock the directory, open its state, read the source (seeds to annotate, or
the pairs to review), settle the relevance threshold, run the source's batches through the
pipeline, write run.json after every stage, and close.

What differs between `gra-local run` and `gra-local review` is the source (source.Source:
generation.Generation, review_only.ReviewSource): where candidates come from and how
batches are made. The pipeline, the decision and the state are the same.
"""

from __future__ import annotations

import random
import sys
import threading
from dataclasses import replace
from pathlib import Path

from gra_local.core.backend import Backend
from gra_local.core.candidate import Candidate
from gra_local.core.config import Registry, Role
from gra_local.core.engine.estimate import Estimator
from gra_local.core.engine.generation import Generation
from gra_local.core.engine.pipeline import Pipeline
from gra_local.core.engine.request import RunRequest, RunResult
from gra_local.core.engine.run_json import build_run_json
from gra_local.core.engine.source import Source
from gra_local.core.engine.state import RunState, open_state
from gra_local.core.engine.waves import StageContext, Stopped
from gra_local.core.errors import ConfigError, ModelDown, error_message
from gra_local.core.events import EventSink, Notice, RunFinished, RunStarted, ignore
from gra_local.core.quality.dedup_gate import DedupGate
from gra_local.core.quality.relevance import MIN_GOOD, Relevance
from gra_local.core.roles import RoleDraw, draw_roles
from gra_local.core.rundir import journal as j
from gra_local.core.rundir import resume
from gra_local.core.rundir.report import RelevanceSection, RunIdentity, RunReport, model_identity
from gra_local.core.seeds.scan import file_fingerprint


def _check_roles(registry: Registry, roles: tuple[Role, ...]) -> None:
    if not registry.models:
        raise ConfigError("no models configured")
    for role in roles:
        if not registry.with_role(role):
            raise ConfigError(f"no model may play the {role.value} role: add it to some "
                              "model's roles in the models file")


class Run:
    def __init__(self, req: RunRequest, backend: Backend, emit: EventSink = ignore,
                 stop: threading.Event | None = None, pause: threading.Event | None = None,
                 live_text: bool = False, source: Source | None = None) -> None:
        """`source`: where candidates come from (generation by default)."""
        self.source: Source = source or Generation()
        _check_roles(req.registry, self.source.roles)
        self.opts = self.source.options(req.options)
        self.req = req.model_copy(update={"options": self.opts})
        self.backend = backend
        self.emit: EventSink = Estimator(self.req, emit)  # an ETA from the models' speeds as they load
        self.stop = stop or threading.Event()
        self.pause = pause
        self.live_text = live_text
        if self.opts.dedup_threshold is not None and req.embedder is None:
            raise ConfigError("semantic dedup needs the embedding model: run `gra-local models "
                              "pull-embedder`, or pass --no-dedup")
        self._state: RunState | None = None
        self._pipeline: Pipeline | None = None

    @property
    def out(self) -> Path:
        return self.req.out_dir

    @property
    def state(self) -> RunState:
        """The run's state, once `execute` has opened its directory."""
        if self._state is None:
            raise RuntimeError("the run has not started")
        return self._state

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise RuntimeError("the run has not started")
        return self._pipeline

    @property
    def ctx(self) -> StageContext:
        return self.pipeline.ctx

    @property
    def status(self) -> str:
        return self._state.status if self._state is not None else "running"

    @property
    def run_json(self) -> RunReport:
        """run.json as last written."""
        assert self.state.report is not None
        return self.state.report

    def identity(self, seeds_sha: str) -> RunIdentity:
        models = {m.name: model_identity(m, self.req.refs[m.name]) for m in self.req.registry.models}
        return RunIdentity(seeds_sha256=seeds_sha, options=self.opts.identity(), models=models,
                           mode=self.source.mode)

    def write_run_json(self) -> None:
        report = build_run_json(self.state)
        j.write_json_atomic(self.out / j.RUN_JSON, report.model_dump(mode="json"))
        self.state.report = report

    # --- the run -----------------------------------------------------------------------

    def execute(self) -> RunResult:
        outer = sys.exc_info()[1]  # an error the caller is handling is not this run's
        j.prepare_out_dir(self.out)
        lock = j.RunLock(self.out)
        lock.acquire()
        try:
            if self.req.restart:
                moved = j.archive_previous(self.out)
                if moved:
                    self.emit(Notice(f"earlier run moved to {moved}"))
            seeds_sha = file_fingerprint(self.req.seeds)
            identity = self.identity(seeds_sha)
            found = resume.load_state(self.out)
            if resume.nothing_done(found) and found.has_run_json:
                resume.discard_empty_run(self.out)  # a failed start holds no data: no refusal
                found = resume.load_state(self.out)
            resume.check_identity(self.out, found, identity)
            # Read the input before anything is written, so a bad file leaves no trace.
            scan = None if (self.out / j.POOL).exists() else self.source.scan(self.req)
            state = self._state = open_state(self.req, self.opts, identity, found,
                                             self.backend, self.emit)
            self._pipeline = Pipeline(state, self.emit, self.stop, self.write_run_json,
                                      pause=self.pause, live_text=self.live_text)
            self.write_run_json()
            self.emit(RunStarted(str(self.out), state.previous is not None,
                                 tuple(self.req.refs), self.opts.samples, self.opts.rounds))
            if self.req.eta_note:
                self.emit(Notice(self.req.eta_note))
            try:
                self.source.prepare(self, seeds_sha, scan)
                self._start_relevance()
                state.status = self.source.rounds(self)
                self._left_by_faults()
            except (Stopped, KeyboardInterrupt, ModelDown) as exc:
                # a second Ctrl-C too, or a model lost for good: the directory resumes
                state.status = "interrupted"
                if not isinstance(exc, Stopped):
                    raise
            except BaseException:
                state.status = "failed"
                raise
            finally:
                self._close(outer)
        finally:
            lock.release()
        stats = self.state.stats
        self.emit(RunFinished(self.status, stats.counts.accepted, stats.counts.rejected))
        return RunResult(status=self.status, out_dir=self.out, run_json=self.run_json)

    def _left_by_faults(self) -> None:
        """Samples a dropped model left undecided: unless the run has its samples anyway
        (then they stay in the journal, as the contested do), it is not over (ModelDown: it
        ends interrupted, and rerunning the same command finishes them)."""
        faulted = self.pipeline.faulted
        if not faulted:
            return
        why = "; ".join(sorted(set(faulted.values())))
        if self.state.status == "complete":
            self.emit(Notice(f"{len(faulted)} samples were left undecided ({why}); the run has "
                             "its samples without them"))
            return
        raise ModelDown(f"{len(faulted)} samples were left undecided: {why}; rerun the same "
                        "command to finish them")

    def _close(self, outer: BaseException | None) -> None:
        """The run's last bookkeeping, every step tried. While an error is on its way out
        (a full disk, say) it stays the one reported: a failure here (run.json cannot be
        written either) is added to it as a note; otherwise the first failure is raised."""
        state = self.state
        failures: list[Exception] = []
        ctrl_c: KeyboardInterrupt | None = None
        steps = [state.pool.close_all, self.write_run_json, state.journal.close,
                 *(out.close for out in state.outputs.values()), state.book.close]
        for step in steps:
            try:
                step()
            except KeyboardInterrupt as exc:  # a Ctrl-C meanwhile: run.json is written all the same
                ctrl_c = ctrl_c or exc
                if state.status == "running":
                    state.status = "interrupted"
            except Exception as exc:  # each is reported below
                failures.append(exc)
        pending = sys.exc_info()[1]
        if pending is None or pending is outer:
            for later in failures[1:]:
                failures[0].add_note(error_message(later))
            if failures:
                raise failures[0]
            if ctrl_c is not None:
                raise ctrl_c
            return
        for failure in failures:
            if error_message(failure) != error_message(pending):  # the same error again
                pending.add_note(error_message(failure))

    def _start_relevance(self) -> None:
        """Settle the relevance threshold once: read back from run.json on resume, else
        calibrated on the canary sources (good pairs vs swapped ones) and written there."""
        state = self.state
        if not self.opts.relevance:
            state.relevance_info = RelevanceSection(enabled=False, note="off (--no-relevance)")
            return
        embedder = self.req.embedder
        if embedder is None:
            note = ("off: the embedding model all-MiniLM-L6-v2 is not installed (`gra-local "
                    "models pull-embedder`)")
            state.relevance_info = RelevanceSection(enabled=False, note=note)
            self.emit(Notice(f"relevance check {note}"))
            return
        cache = state.dedup.cache if isinstance(state.dedup, DedupGate) else None
        check = Relevance(embedder, cache, self.req.cache_dir)
        before = state.previous.relevance if state.previous is not None else None
        if before is not None and before.threshold is not None:
            state.relevance_info = before
            check.threshold = before.threshold
        else:
            sources = self.source.canary_sources(self)
            found = check.calibrate(sources)
            if found is None:
                usable = len([s for s in sources if s.instruction.strip() and s.response.strip()])
                note = (f"off: {usable} pair(s) with a response to calibrate on, fewer than "
                        f"{MIN_GOOD} (or no swap possible)")
                state.relevance_info = RelevanceSection(enabled=False, embedder=embedder.name,
                                                        note=note)
                self.emit(Notice(f"relevance check {note}"))
                return
            check.threshold = found.value
            state.relevance_info = RelevanceSection(
                enabled=True, threshold=found.value, embedder=embedder.name,
                balanced_accuracy=round(found.balanced_accuracy, 4),
                source=f"{found.good} good pairs vs {found.bad} swapped ({self.source.mode} "
                       "canary sources)")
        state.relevance = check
        self.write_run_json()

    # --- what the sources share ----------------------------------------------------------

    def usable(self, role: Role) -> list[str]:
        """The models that can play `role`, less those dropped after repeated worker
        failures; ModelDown when none is left (the run ends interrupted, resumable)."""
        names = [m.name for m in self.req.registry.with_role(role)]
        usable = self.state.pool.usable(names)
        if not usable:
            why = "; ".join(f"{n}: {self.state.pool.drop_reason(n)}" for n in names)
            raise ModelDown(f"every model that can play the {role.value} role was dropped ({why}); "
                            "the run stopped: rerun the same command to resume")
        return usable

    def canaries(self, round_no: int, samples: int = 0) -> list[Candidate]:
        """A batch's canaries (for `samples` new samples), journaled (none when the run
        makes none)."""
        def draw_for(cid: str) -> RoleDraw:
            rng = random.Random(f"{self.opts.seed}/{cid}")
            draw = draw_roles(rng, [""], self.usable(Role.REVIEWER), self.usable(Role.ADJUDICATOR),
                              self.opts.panel)
            # A canary measures models, not panel slots: each distinct reviewer once.
            return replace(draw, panel=list(dict.fromkeys(draw.panel)))

        made = self.state.book.make(round_no, self.source.canary_sources(self), draw_for, samples)
        for cand in made:
            self.state.snapshot(cand)
        return made
