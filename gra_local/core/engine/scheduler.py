"""A whole run: seeds → pool → rounds of batches → accepted/rejected records → run.json.

Batches run stage by stage (generate, review A, review B, decide, adjudicate), each stage
model by model, so loads grow with models × stages × batches, never with samples. The
default batch size adapts to the acceptance rate seen so far, which keeps batches few.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from typing import Literal

from gra_local.core.backend import Backend
from gra_local.core.candidate import Candidate, attempt_rng, now
from gra_local.core.config import Registry, Role
from gra_local.core.engine.annotate import AnnotationCache, annotate_kept, annotate_seeds
from gra_local.core.engine.batch import BatchDecider
from gra_local.core.engine.model_pool import ModelPool
from gra_local.core.engine.request import RunRequest, RunResult
from gra_local.core.engine.run_json import build_run_json
from gra_local.core.engine.stages import (
    StageContext,
    Stopped,
)
from gra_local.core.errors import BackendError, ConfigError, EndpointDown, error_message
from gra_local.core.events import (
    EventSink,
    Notice,
    RunFinished,
    RunStarted,
    ignore,
)
from gra_local.core.quality.canaries import CanarySource
from gra_local.core.quality.canary_flow import CanaryBook
from gra_local.core.quality.dedup_gate import DedupGate, make_gate
from gra_local.core.quality.relevance import MIN_GOOD, Relevance
from gra_local.core.records import Decision
from gra_local.core.roles import RoleDraw, draw_roles
from gra_local.core.rundir import files, resume
from gra_local.core.rundir import journal as j
from gra_local.core.rundir.report import (
    RelevanceSection,
    RunIdentity,
    RunReport,
    SeedsInfo,
    model_identity,
)
from gra_local.core.seeds.pool import PoolEntry, check_pool
from gra_local.core.seeds.scan import SeedScan, file_fingerprint, scan_seeds
from gra_local.core.stats import RunStats

MAX_AUTO_BATCH = 256


def _check_roles(registry: Registry, roles: tuple[Role, ...]) -> None:
    if not registry.models:
        raise ConfigError("no models configured")
    for role in roles:
        if not registry.with_role(role):
            raise ConfigError(f"no model may play the {role.value} role: add it to some "
                              "model's roles in the models file")


class Run:
    ROLES: tuple[Role, ...] = tuple(Role)
    MODE: Literal["run", "review"] = "run"
    """Recorded in the run's identity: `review` never continues a `run` directory, nor back."""
    """Roles some registered model must be able to play."""

    def __init__(self, req: RunRequest, backend: Backend, emit: EventSink = ignore,
                 stop: threading.Event | None = None, pause: threading.Event | None = None,
                 live_text: bool = False) -> None:
        _check_roles(req.registry, self.ROLES)
        self.req = req
        self.opts = req.options
        self.out = req.out_dir
        self.emit = emit
        self.stop = stop or threading.Event()
        self.stats = RunStats()
        self.pool = ModelPool(backend, req.registry, self.stats, emit, req.residency)
        self.ctx = StageContext(self.opts, req.registry, self.pool, self.stats, emit, self.stop,
                                self._snapshot, pause=pause, live_text=live_text,
                                weighted_vetoes=self.opts.weighs_reviewers)
        self.started = now()
        self.status = "running"
        self.seeds_info = SeedsInfo()
        self.previous: RunReport | None = None
        """The run.json this directory held when the run started (resume)."""
        self.pool_entries: list[PoolEntry] = []
        if self.opts.dedup_threshold is not None and req.embedder is None:
            raise ConfigError("semantic dedup needs the embedding model: run `gra-local models "
                              "pull-embedder`, or pass --no-dedup")
        self.book = CanaryBook(self.out, self.opts)
        self.dedup = make_gate(req.embedder, req.cache_dir, self.opts.dedup_threshold,
                               self.opts.minhash)
        self.relevance_info: RelevanceSection | None = None
        """run.json's relevance section; None until the threshold is settled at start."""
        self._t0 = time.perf_counter()

    # --- files -------------------------------------------------------------------------

    def identity(self, seeds_sha: str) -> RunIdentity:
        models = {m.name: model_identity(m, self.req.refs[m.name]) for m in self.req.registry.models}
        return RunIdentity(seeds_sha256=seeds_sha, options=self.opts.identity(), models=models,
                           mode=self.MODE)

    def _snapshot(self, cand: Candidate) -> None:
        self._journal.append(cand.model_dump(mode="json"))

    def write_run_json(self) -> None:
        report = build_run_json(self, time.perf_counter() - self._t0)
        j.write_json_atomic(self.out / j.RUN_JSON, report.model_dump(mode="json"))
        self.run_json = report

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
            self.identity_doc = self.identity(seeds_sha)
            state = resume.load_state(self.out)
            if resume.nothing_done(state) and state.has_run_json:
                resume.discard_empty_run(self.out)  # a failed start holds no data: no refusal
                state = resume.load_state(self.out)
            resume.check_identity(self.out, state, self.identity_doc)
            self.previous = state.previous
            # Read the seeds before anything is written, so a bad file leaves no trace.
            scan = None if (self.out / j.POOL).exists() else self._scan_seeds()
            if self.previous is not None and self.previous.stats is not None:
                self.stats = self.previous.stats.model_copy(deep=True)  # counters go on
                self.pool.stats = self.ctx.stats = self.stats
            resume.recount(self.out, self.stats, state)
            resume.compact_journal(self.out, state.inflight)
            self._journal = j.JsonlAppender(self.out / j.JOURNAL)
            self._outputs = {Decision.ACCEPTED: j.JsonlAppender(self.out / j.ACCEPTED),
                             Decision.REJECTED: j.JsonlAppender(self.out / j.REJECTED)}
            self.book.load([*state.accepted, *j.read_jsonl(self.out / j.REJECTED, repair=False)],
                           state.inflight)
            self.decider = BatchDecider(self.ctx, self.req.refs, self._outputs, self.dedup,
                                        self.book, self.write_run_json)
            self.state = state
            self.write_run_json()
            self.emit(RunStarted(str(self.out), state.previous is not None,
                                 tuple(self.req.refs), self.opts.samples, self.opts.rounds))
            if self.req.eta_note:
                self.emit(Notice(self.req.eta_note))
            try:
                seed_pool = self._seed_pool(seeds_sha, scan)
                self._start_relevance()
                self.status = self._rounds(seed_pool, state)
            except (Stopped, KeyboardInterrupt, EndpointDown) as exc:
                # a second Ctrl-C too, or a server gone for good: the directory resumes
                self.status = "interrupted"
                if not isinstance(exc, Stopped):
                    raise
            except BaseException:
                self.status = "failed"
                raise
            finally:
                self._close(outer)
        finally:
            lock.release()
        self.emit(RunFinished(self.status, self.stats.counts.accepted, self.stats.counts.rejected))
        return RunResult(status=self.status, out_dir=self.out, run_json=self.run_json)

    def _close(self, outer: BaseException | None) -> None:
        """The run's last bookkeeping, every step tried. While an error is on its way out
        (a full disk, say) it stays the one reported: a failure here (run.json cannot be
        written either) is added to it as a note; otherwise the first failure is raised."""
        failures: list[Exception] = []
        ctrl_c: KeyboardInterrupt | None = None
        steps = [self.pool.close_all, self.write_run_json, self._journal.close,
                 *(out.close for out in self._outputs.values()), self.book.close]
        for step in steps:
            try:
                step()
            except KeyboardInterrupt as exc:  # a Ctrl-C meanwhile: run.json is written all the same
                ctrl_c = ctrl_c or exc
                if self.status == "running":
                    self.status = "interrupted"
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
        if not self.opts.relevance:
            self.relevance_info = RelevanceSection(enabled=False, note="off (--no-relevance)")
            return
        embedder = self.req.embedder
        if embedder is None:
            note = ("off: the embedding model all-MiniLM-L6-v2 is not installed (`gra-local "
                    "models pull-embedder`)")
            self.relevance_info = RelevanceSection(enabled=False, note=note)
            self.emit(Notice(f"relevance check {note}"))
            return
        cache = self.dedup.cache if isinstance(self.dedup, DedupGate) else None
        check = Relevance(embedder, cache, self.req.cache_dir)
        before = self.previous.relevance if self.previous is not None else None
        if before is not None and before.threshold is not None:
            self.relevance_info = before
            check.threshold = before.threshold
        else:
            sources = self.canary_sources()
            found = check.calibrate(sources)
            if found is None:
                usable = len([s for s in sources if s.instruction.strip() and s.response.strip()])
                note = (f"off: {usable} pair(s) with a response to calibrate on, fewer than "
                        f"{MIN_GOOD} (or no swap possible)")
                self.relevance_info = RelevanceSection(enabled=False, embedder=embedder.name,
                                                       note=note)
                self.emit(Notice(f"relevance check {note}"))
                return
            check.threshold = found.value
            self.relevance_info = RelevanceSection(
                enabled=True, threshold=found.value, embedder=embedder.name,
                balanced_accuracy=round(found.balanced_accuracy, 4),
                source=f"{found.good} good pairs vs {found.bad} swapped ({self.MODE} canary sources)")
        self.decider.relevance = check
        self.write_run_json()

    def _scan_seeds(self) -> SeedScan:
        rng = random.Random(f"{self.opts.seed}/seed-pool")
        return scan_seeds(self.req.seeds, self.opts.seed_pool, rng)

    def _seed_pool(self, seeds_sha: str, scan: SeedScan | None) -> list[PoolEntry]:
        later: list[PoolEntry] = []  # what rounds added, kept when the seed part is rebuilt
        if scan is None:
            # The pool file holds the seeds and, after them, what later rounds added.
            found = j.scan_jsonl(self.out / j.POOL)
            pool = check_pool(found.rows, found.problems,
                              self.previous.seeds.pool if self.previous is not None else None)
            if pool.problems:  # a power cut, a full disk
                self.emit(Notice(pool.warning(self.out / j.POOL)))
                if pool.seeds_complete:
                    files.write_atomic(self.out / j.POOL, j.jsonl_bytes(e.model_dump() for e in pool.entries))
            if not pool.problems or pool.seeds_complete:
                self.seeds_info = self.previous.seeds if self.previous is not None else SeedsInfo()
                self.pool_entries = pool.entries
                self._count_added(pool.later)
                return pool.seeds
            later, scan = pool.later, self._scan_seeds()
        for skipped in scan.skipped_examples[:5]:
            self.emit(Notice(f"{self.req.seeds} line {skipped.line}: skipped, {skipped.reason}"))
        if scan.skipped > 5:
            self.emit(Notice(f"{self.req.seeds}: {scan.skipped} records skipped in all"))
        cache = AnnotationCache(self.req.cache_dir, seeds_sha, lambda text: self.emit(Notice(text)))
        try:
            entries = annotate_seeds(self.ctx, scan.sample, self.req.refs, cache, str(self.req.seeds))
        finally:
            cache.close()
        files.write_atomic(self.out / j.POOL, j.jsonl_bytes(e.model_dump() for e in [*entries, *later]))
        self.seeds_info = SeedsInfo(path=str(self.req.seeds), sha256=seeds_sha, format=scan.format,
                                    usable=scan.usable, skipped=scan.skipped, pool=len(entries))
        self.pool_entries = [*entries, *later]
        self._count_added(later)
        self.write_run_json()
        return entries

    def _count_added(self, later: list[PoolEntry]) -> None:
        for entry in later:
            self.stats.round(entry.round).pool_added += 1
            self.stats.round(entry.round).annotation_fallbacks += entry.annotator is None

    def _rounds(self, seed_pool: list[PoolEntry], state: resume.RunDirState) -> str:
        status = "complete"
        self.dedup.prime(seed_pool, state.accepted)
        for round_no in range(1, self.opts.rounds + 1):
            self.ctx.round = round_no
            if round_no > 1:
                self._grow_pool(round_no - 1, state)
            examples = [e for e in self.pool_entries if e.round < round_no]
            inflight = [c for c in state.inflight if c.round == round_no]
            while True:
                if inflight:
                    batch, inflight = inflight, []
                else:
                    n = self._batch_size(round_no, state)
                    if n == 0:
                        break
                    batch = self._new_batch(round_no, n, examples, state)
                self.decider.process(batch, state)
                self.write_run_json()
            if state.accepted_in(round_no) < self.opts.samples:
                status = "exhausted"
                self.emit(Notice(f"round {round_no}: max attempts ({self.opts.attempt_cap}) reached "
                                 f"with {state.accepted_in(round_no)} of {self.opts.samples} accepted"))
        return status

    def _grow_pool(self, round_no: int, state: resume.RunDirState) -> None:
        """Step 4c: the round's kept samples, re-annotated, join the generator's pool."""
        known = {e.source for e in self.pool_entries}
        todo = [r for r in state.accepted if r["round"] == round_no and r["id"] not in known]
        if not todo:
            return
        self.emit(Notice(f"round {round_no}: annotating {len(todo)} kept samples for the next round"))
        writer = j.JsonlAppender(self.out / j.POOL)
        stats = self.stats.round(round_no)

        def write(entry: PoolEntry) -> None:
            writer.append(entry.model_dump())
            self.pool_entries.append(entry)
            stats.pool_added += 1
            stats.annotation_fallbacks += entry.annotator is None

        try:
            annotate_kept(self.ctx, todo, round_no, write)
        finally:
            writer.close()
        self.write_run_json()

    def _batch_size(self, round_no: int, state: resume.RunDirState) -> int:
        needed = self.opts.samples - state.accepted_in(round_no)
        remaining = self.opts.attempt_cap - state.attempts[round_no]
        if needed <= 0 or remaining <= 0:
            return 0
        if self.opts.batch:
            return min(self.opts.batch, remaining)
        counts = self.stats.counts
        decided = counts.accepted + counts.rejected
        rate = counts.accepted / decided if decided >= 4 else 0.5
        return max(1, min(math.ceil(needed / max(rate, 0.05)), remaining, MAX_AUTO_BATCH))

    def _new_batch(self, round_no: int, n: int, examples: list[PoolEntry],
                   state: resume.RunDirState) -> list[Candidate]:
        names = {role: self._usable(role) for role in Role}
        by_domain: dict[str, list[PoolEntry]] = {}
        for entry in examples:
            by_domain.setdefault(entry.domain, []).append(entry)
        domains = sorted(by_domain)
        batch = []
        for attempt in range(state.attempts[round_no] + 1, state.attempts[round_no] + n + 1):
            rng = attempt_rng(self.opts.seed, round_no, attempt)
            draw = draw_roles(rng, names[Role.GENERATOR], names[Role.REVIEWER],
                              names[Role.ADJUDICATOR], self.opts.panel)
            domain = rng.choice(domains)
            pool = by_domain[domain]
            picked = rng.sample(pool, min(self.opts.examples_per_prompt, len(pool)))
            cand = Candidate.new(round_no, attempt, self.opts.seed, domain,
                                 [p.example for p in picked], draw)
            self._snapshot(cand)
            batch.append(cand)
        batch += self._canaries(round_no)
        state.attempts[round_no] += n
        self.stats.round(round_no).attempts = state.attempts[round_no]
        self.stats.counts.attempts += n
        return batch

    def _usable(self, role: Role) -> list[str]:
        """The models that can play `role`, less those dropped after repeated worker
        failures; BackendError when none is left (the run ends resumable)."""
        names = [m.name for m in self.req.registry.with_role(role)]
        usable = self.pool.usable(names)
        if not usable:
            raise BackendError(f"every model that can play the {role.value} role was dropped after "
                               f"repeated worker failures ({', '.join(names)}); see the notes above "
                               "and the model logs, then resume")
        return usable

    def canary_sources(self) -> list[CanarySource]:
        """Seeds that came with a response: the known-good pairs canaries are made from."""
        return [CanarySource(id=e.source, instruction=e.instruction, response=e.response,
                             domain=e.domain) for e in self.pool_entries if e.round == 0 and e.response]

    def _canaries(self, round_no: int) -> list[Candidate]:
        def draw_for(cid: str) -> RoleDraw:
            rng = random.Random(f"{self.opts.seed}/{cid}")
            return draw_roles(rng, [""], self._usable(Role.REVIEWER), self._usable(Role.ADJUDICATOR),
                              self.opts.panel)

        made = self.book.make(round_no, self.canary_sources(), draw_for)
        for cand in made:
            self._snapshot(cand)
        return made
