"""A whole run: seeds → pool → rounds of batches → accepted/rejected records → run.json.

Batches run stage by stage (generate, review A, review B, decide, adjudicate), each stage
model by model, so loads grow with models × stages × batches, never with samples. The
default batch size adapts to the acceptance rate seen so far, which keeps batches few.
"""

from __future__ import annotations

import math
import random
import threading
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from gra_local.core import journal as j
from gra_local.core import rundir
from gra_local.core.annotate import AnnotationCache, PoolEntry, annotate_seeds
from gra_local.core.backend import Backend
from gra_local.core.candidate import Candidate, attempt_rng, now
from gra_local.core.config import Registry, Role, RunOptions
from gra_local.core.decide import Verdict, decide
from gra_local.core.errors import ConfigError
from gra_local.core.events import (
    EventSink,
    Notice,
    RecordDecided,
    RunFinished,
    RunStarted,
    ignore,
)
from gra_local.core.pool import ModelPool, Residency
from gra_local.core.records import Decision, ModelRef, Reason
from gra_local.core.roles import draw_roles
from gra_local.core.seeds import SeedScan, file_fingerprint, scan_seeds
from gra_local.core.stages import (
    StageContext,
    Stopped,
    adjudicate,
    generate,
    review_instructions,
    review_responses,
)
from gra_local.core.stats import RunStats
from gra_local.core.summary import build_run_json

MAX_AUTO_BATCH = 256


class RunRequest(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    seeds: Path
    out_dir: Path
    options: RunOptions
    registry: Registry
    refs: dict[str, ModelRef]
    """Provenance of every registered model, checked before anything loads."""
    models_source: str
    cache_dir: Path
    restart: bool = False
    residency: Residency | None = None
    """Memory budget for keeping several models loaded; None: one model at a time."""
    predicted_seconds: float | None = None
    """ETA from `models bench` figures, reported against the actual time in run.json."""
    eta_note: str | None = None


class RunResult(BaseModel):
    status: str
    out_dir: Path
    run_json: dict


def _check_roles(registry: Registry) -> None:
    if not registry.models:
        raise ConfigError("no models configured")
    for role in Role:
        if not registry.with_role(role):
            raise ConfigError(f"no model may play the {role.value} role: add it to some "
                              "model's roles in the models file")


class Run:
    def __init__(self, req: RunRequest, backend: Backend, emit: EventSink = ignore,
                 stop: threading.Event | None = None, pause: threading.Event | None = None,
                 live_text: bool = False) -> None:
        _check_roles(req.registry)
        self.req = req
        self.opts = req.options
        self.out = req.out_dir
        self.emit = emit
        self.stop = stop or threading.Event()
        self.stats = RunStats()
        self.pool = ModelPool(backend, req.registry, self.stats, emit, req.residency)
        self.ctx = StageContext(self.opts, req.registry, self.pool, self.stats, emit, self.stop,
                                self._snapshot, pause=pause, live_text=live_text)
        self.started = now()
        self.status = "running"
        self.seeds_info: dict = {}
        self._t0 = time.perf_counter()

    # --- files -------------------------------------------------------------------------

    def identity(self, seeds_sha: str) -> dict:
        models = {m.name: {"sha256": self.req.refs[m.name].sha256,
                           **m.model_dump(mode="json", exclude={"name", "path", "sha256"})}
                  for m in self.req.registry.models}
        return {"seeds_sha256": seeds_sha, "options": self.opts.identity(), "models": models}

    def _snapshot(self, cand: Candidate) -> None:
        self._journal.append(cand.model_dump(mode="json"))

    def write_run_json(self) -> None:
        data = build_run_json(self, time.perf_counter() - self._t0)
        j.write_json_atomic(self.out / j.RUN_JSON, data)
        self.run_json = data

    # --- the run -----------------------------------------------------------------------

    def execute(self) -> RunResult:
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
            state = rundir.load_state(self.out)
            if rundir.nothing_done(state) and state.previous is not None:
                rundir.discard_empty_run(self.out)  # a failed start holds no data: no refusal
                state = rundir.load_state(self.out)
            rundir.check_identity(self.out, state.previous, self.identity_doc)
            self.previous = state.previous
            # Read the seeds before anything is written, so a bad file leaves no trace.
            scan = None if (self.out / j.POOL).exists() else self._scan_seeds()
            if state.previous and "stats" in state.previous:
                self.stats = RunStats.model_validate(state.previous["stats"])
                self.pool.stats = self.ctx.stats = self.stats
            rundir.recount(self.out, self.stats, state)
            rundir.compact_journal(self.out, state.inflight)
            self._journal = j.JsonlAppender(self.out / j.JOURNAL)
            self._outputs = {Decision.ACCEPTED: j.JsonlAppender(self.out / j.ACCEPTED),
                             Decision.REJECTED: j.JsonlAppender(self.out / j.REJECTED)}
            self.state = state
            self.write_run_json()
            self.emit(RunStarted(str(self.out), state.previous is not None,
                                 tuple(self.req.refs), self.opts.samples, self.opts.rounds))
            if self.req.eta_note:
                self.emit(Notice(self.req.eta_note))
            try:
                seed_pool = self._seed_pool(seeds_sha, scan)
                self.status = self._rounds(seed_pool, state)
            except Stopped:
                self.status = "interrupted"
            except BaseException:
                self.status = "failed"
                raise
            finally:
                self.pool.close_all()
                self.write_run_json()
                self._journal.close()
                for out in self._outputs.values():
                    out.close()
        finally:
            lock.release()
        self.emit(RunFinished(self.status, self.stats.counts.accepted, self.stats.counts.rejected))
        return RunResult(status=self.status, out_dir=self.out, run_json=self.run_json)

    def _scan_seeds(self) -> SeedScan:
        rng = random.Random(f"{self.opts.seed}/seed-pool")
        return scan_seeds(self.req.seeds, self.opts.seed_pool, rng)

    def _seed_pool(self, seeds_sha: str, scan: SeedScan | None) -> list[PoolEntry]:
        if scan is None:
            entries = [PoolEntry.model_validate(r) for r in j.read_jsonl(self.out / j.POOL, repair=False)]
            self.seeds_info = (self.previous or {}).get("seeds", {})
            return entries
        for skipped in scan.skipped_examples[:5]:
            self.emit(Notice(f"{self.req.seeds} line {skipped.line}: skipped, {skipped.reason}"))
        if scan.skipped > 5:
            self.emit(Notice(f"{self.req.seeds}: {scan.skipped} records skipped in all"))
        cache = AnnotationCache(self.req.cache_dir, seeds_sha)
        try:
            entries = annotate_seeds(self.ctx, scan.sample, self.req.refs, cache)
        finally:
            cache.close()
        tmp = self.out / f".{j.POOL}.tmp"
        writer = j.JsonlAppender(tmp, fsync=False)
        for entry in entries:
            writer.append(entry.model_dump())
        writer.close()
        tmp.replace(self.out / j.POOL)
        self.seeds_info = {"path": str(self.req.seeds), "sha256": seeds_sha, "format": scan.format,
                           "usable": scan.usable, "skipped": scan.skipped, "pool": len(entries)}
        self.write_run_json()
        return entries

    def _rounds(self, seed_pool: list[PoolEntry], state: rundir.RunDirState) -> str:
        status = "complete"
        for round_no in range(1, self.opts.rounds + 1):
            self.ctx.round = round_no
            examples = seed_pool + [
                PoolEntry(source=r["id"], round=r["round"], instruction=r["instruction"],
                          domain=r["domain"], keywords=r["keywords"], summary=r["summary"])
                for r in state.accepted if r["round"] < round_no]
            inflight = [c for c in state.inflight if c.round == round_no]
            while True:
                if inflight:
                    batch, inflight = inflight, []
                else:
                    n = self._batch_size(round_no, state)
                    if n == 0:
                        break
                    batch = self._new_batch(round_no, n, examples, state)
                self._process(batch, state)
                self.write_run_json()
            if state.accepted_in(round_no) < self.opts.samples:
                status = "exhausted"
                self.emit(Notice(f"round {round_no}: max attempts ({self.opts.attempt_cap}) reached "
                                 f"with {state.accepted_in(round_no)} of {self.opts.samples} accepted"))
        return status

    def _batch_size(self, round_no: int, state: rundir.RunDirState) -> int:
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
                   state: rundir.RunDirState) -> list[Candidate]:
        reg = self.req.registry
        names = {role: [m.name for m in reg.with_role(role)] for role in Role}
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
        state.attempts[round_no] += n
        self.stats.round(round_no).attempts = state.attempts[round_no]
        self.stats.counts.attempts += n
        return batch

    def _process(self, batch: list[Candidate], state: rundir.RunDirState) -> None:
        for stage in (generate, review_instructions, review_responses):
            stage(self.ctx, batch)
            self._finalize_failed(batch, state)
            self.write_run_json()
        contested = []
        for cand in batch:
            if cand.id in state.decided:
                continue
            outcome = decide([rv.score for rv in cand.reviews if rv.score is not None],
                             self.opts.tau, self.opts.delta)
            if outcome.verdict is Verdict.ACCEPT:
                self._finalize(cand, state, Reason.ACCEPTED, f"μ {outcome.mean:.2f} ≥ τ and "
                               f"σ {outcome.std:.2f} ≤ δ", outcome.mean, outcome.std)
            elif outcome.verdict is Verdict.REJECT:
                self._finalize(cand, state, Reason.LOW_SCORE, f"μ {outcome.mean:.2f} < τ "
                               f"{self.opts.tau}", outcome.mean, outcome.std)
            else:
                contested.append((cand, outcome))
        if state.accepted_in(batch[0].round) >= self.opts.samples:
            return  # contested ones stay in the journal for a later, larger run
        adjudicate(self.ctx, [c for c, _ in contested])
        self._finalize_failed([c for c, _ in contested], state)
        for cand, outcome in contested:
            if cand.id in state.decided or cand.adjudication is None:
                continue
            adj = cand.adjudication
            reason = Reason.ADJUDICATED_ACCEPT if adj.kept else Reason.ADJUDICATED_REJECT
            self._finalize(cand, state, reason, f"σ {outcome.std:.2f} > δ; adjudicator "
                           f"{adj.model} scored {adj.score:.2f}", outcome.mean, outcome.std)

    def _finalize_failed(self, batch: list[Candidate], state: rundir.RunDirState) -> None:
        for cand in batch:
            if cand.failed and cand.id not in state.decided:
                scores = [rv.score for rv in cand.reviews if rv.score is not None]
                mean = std = None
                if scores:
                    outcome = decide(scores, self.opts.tau, self.opts.delta)
                    mean, std = outcome.mean, outcome.std
                self._finalize(cand, state, Reason(cand.failed), cand.failed_detail, mean, std)

    def _sampling(self, cand: Candidate) -> dict[str, dict[str, float | int]]:
        reg = self.req.registry
        out = {"generator": reg.get(cand.generator).sampling_for(Role.GENERATOR).model_dump()}
        for rv in cand.reviews:
            out[f"reviewer:{rv.model}"] = reg.get(rv.model).sampling_for(Role.REVIEWER).model_dump()
        if cand.adjudication:
            name = cand.adjudication.model
            out[f"adjudicator:{name}"] = reg.get(name).sampling_for(Role.ADJUDICATOR).model_dump()
        return out

    def _finalize(self, cand: Candidate, state: rundir.RunDirState, reason: Reason, detail: str,
                  mean: float | None, std: float | None) -> None:
        accepted = reason in (Reason.ACCEPTED, Reason.ADJUDICATED_ACCEPT)
        if accepted and state.accepted_in(cand.round) >= self.opts.samples:
            # The round has what was asked for: keep this one in the journal, undecided,
            # so that a rerun with a larger --samples takes it without redoing any call.
            return
        decision = Decision.ACCEPTED if accepted else Decision.REJECTED
        refs = {name: ref.model_copy(update={"n_gpu_layers": self.stats.model(name).n_gpu_layers})
                for name, ref in self.req.refs.items()}
        record = cand.to_record(decision, reason, detail, mean, std, refs, self._sampling(cand))
        data = record.model_dump(mode="json")
        self._outputs[decision].append(data)
        state.decided.add(cand.id)
        if accepted:
            state.accepted.append(data)
        if cand.shared:
            self.stats.roles_shared += 1
        self.stats.record_decision(cand.round, accepted, reason.value, cand.adjudication is not None)
        self.emit(RecordDecided(cand.id, decision.value, reason.value, mean,
                                state.accepted_in(cand.round), self.opts.samples))
