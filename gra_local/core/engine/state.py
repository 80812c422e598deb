"""The run's state, one object made in one place (`open_state`, once the run directory is
locked and checked): what the directory holds (decided ids, accepted records, attempts,
candidates in flight), the counters, the canary book, the journal and the record files,
the model pool, the dedup gate and the relevance threshold. The pipeline, the sources and
run.json all read this one object; nothing holds a copy of any part of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from gra_local.core.backend import Backend
from gra_local.core.candidate import Candidate, now
from gra_local.core.engine.model_pool import ModelPool
from gra_local.core.engine.request import RunRequest
from gra_local.core.events import EventSink
from gra_local.core.options import RunOptions
from gra_local.core.quality.canary_flow import CanaryBook
from gra_local.core.quality.dedup_gate import Gate, make_gate
from gra_local.core.quality.relevance import Relevance
from gra_local.core.records import Decision
from gra_local.core.rundir import journal as j
from gra_local.core.rundir import resume
from gra_local.core.rundir.report import RelevanceSection, RunIdentity, RunReport, SeedsInfo
from gra_local.core.seeds.pool import PoolEntry
from gra_local.core.stats import RunStats


@dataclass
class RunState:
    req: RunRequest
    opts: RunOptions
    """The options the run goes by (the request's, as its source adapted them)."""
    identity: RunIdentity
    dir: resume.RunDirState
    stats: RunStats
    """Counters, carried on from the previous session's run.json on resume."""
    pool: ModelPool
    book: CanaryBook
    dedup: Gate
    journal: j.JsonlAppender
    outputs: dict[Decision, j.JsonlAppender]
    started: str = field(default_factory=now)
    t0: float = field(default_factory=time.perf_counter)
    status: str = "running"
    seeds_info: SeedsInfo = field(default_factory=SeedsInfo)
    pool_entries: list[PoolEntry] = field(default_factory=list)
    """The generator's seed pool: the annotated seeds, then what later rounds added."""
    relevance: Relevance | None = None
    """The relevance check, once its threshold is settled; None: off for this run."""
    relevance_info: RelevanceSection | None = None
    """run.json's relevance section; None until the threshold is settled at start."""
    report: RunReport | None = None
    """run.json as last written."""

    @property
    def out(self) -> Path:
        return self.req.out_dir

    @property
    def previous(self) -> RunReport | None:
        """The run.json this directory held when the run started (resume)."""
        return self.dir.previous

    @property
    def scorer(self) -> str | None:
        """The model that scores likelihood evidence in this run; None: none does
        (--no-likelihood, or no GGUF model to score with)."""
        return self.req.scorer if self.opts.likelihood else None

    def snapshot(self, cand: Candidate) -> None:
        """The candidate as it stands, appended to the journal."""
        self.journal.append(cand.model_dump(mode="json"))


def open_state(req: RunRequest, opts: RunOptions, identity: RunIdentity,
               found: resume.RunDirState, backend: Backend, emit: EventSink) -> RunState:
    """The run's state from what its directory holds (`found`, checked against the run's
    identity): counters recounted from the files, the journal compacted, the record files
    and the canary book opened."""
    out = req.out_dir
    # First: a dedup cache that must be refused (another model's) leaves no record file.
    dedup = make_gate(req.embedder, req.cache_dir, opts.dedup_threshold, opts.minhash)
    previous = found.previous
    stats = previous.stats.model_copy(deep=True) if previous is not None and previous.stats \
        is not None else RunStats()  # counters go on
    resume.recount(out, stats, found)
    resume.compact_journal(out, found.inflight)
    journal = j.JsonlAppender(out / j.JOURNAL)
    outputs = {Decision.ACCEPTED: j.JsonlAppender(out / j.ACCEPTED),
               Decision.REJECTED: j.JsonlAppender(out / j.REJECTED),
               Decision.UNVERIFIED: j.JsonlAppender(out / j.UNVERIFIED)}
    book = CanaryBook(out, opts, trusted=identity.mode != "review")
    book.load([*found.accepted, *j.read_jsonl(out / j.REJECTED, repair=False),
               *j.read_jsonl(out / j.UNVERIFIED, repair=False)], found.inflight)
    return RunState(
        req=req, opts=opts, identity=identity, dir=found, stats=stats,
        pool=ModelPool(backend, req.registry, stats, emit, req.residency), book=book,
        dedup=dedup, journal=journal, outputs=outputs)
