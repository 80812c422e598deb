"""Generation runs (`gra-local run`): seeds → annotated pool → rounds of batches of new
candidates, each drawn its generator, panel and examples; between rounds the kept samples
join the pool (docs/method.md, "Several rounds").

The default batch size adapts to the acceptance rate seen so far, which keeps batches, and
so model loads, few: loads grow with models × stages × batches, never with samples.
"""

from __future__ import annotations

import math
import random
from typing import Literal

from gra_local.core.candidate import Candidate, attempt_rng
from gra_local.core.config import Role
from gra_local.core.engine.annotate import AnnotationCache, annotate_kept, annotate_seeds
from gra_local.core.engine.request import RunRequest
from gra_local.core.engine.source import RunHandle
from gra_local.core.events import Notice
from gra_local.core.options import MAX_AUTO_BATCH, RunOptions
from gra_local.core.quality.canaries import CanarySource
from gra_local.core.roles import draw_roles
from gra_local.core.rundir import files
from gra_local.core.rundir import journal as j
from gra_local.core.rundir.report import SeedsInfo
from gra_local.core.seeds.pool import PoolEntry, check_pool
from gra_local.core.seeds.scan import SeedScan, scan_seeds


class Generation:
    """The source of a generation run (source.Source)."""

    mode: Literal["run", "review"] = "run"
    roles: tuple[Role, ...] = tuple(Role)

    def options(self, opts: RunOptions) -> RunOptions:
        return opts

    def scan(self, req: RunRequest) -> SeedScan:
        rng = random.Random(f"{req.options.seed}/seed-pool")
        return scan_seeds(req.seeds, req.options.seed_pool, rng)

    def prepare(self, run: RunHandle, seeds_sha: str, scan: SeedScan | None) -> None:
        """The seed pool: read back (and mended) from pool.jsonl on resume, else the scanned
        seeds annotated; what later rounds added is kept when the seed part is rebuilt."""
        state, later = run.state, []
        if scan is None:
            # The pool file holds the seeds and, after them, what later rounds added.
            found = j.scan_jsonl(run.out / j.POOL)
            pool = check_pool(found.rows, found.problems,
                              state.previous.seeds.pool if state.previous is not None else None)
            if pool.problems:  # a power cut, a full disk
                run.emit(Notice(pool.warning(run.out / j.POOL)))
                if pool.seeds_complete:
                    files.write_atomic(run.out / j.POOL, j.jsonl_bytes(e.model_dump() for e in pool.entries))
            if not pool.problems or pool.seeds_complete:
                state.seeds_info = state.previous.seeds if state.previous is not None else SeedsInfo()
                state.pool_entries = pool.entries
                self._count_added(run, pool.later)
                return
            later, scan = pool.later, self.scan(run.req)
        seeds = run.req.seeds
        for skipped in scan.skipped_examples[:5]:
            run.emit(Notice(f"{seeds} line {skipped.line}: skipped, {skipped.reason}"))
        if scan.skipped > 5:
            run.emit(Notice(f"{seeds}: {scan.skipped} records skipped in all"))
        cache = AnnotationCache(run.req.cache_dir, seeds_sha, lambda text: run.emit(Notice(text)))
        try:
            entries = annotate_seeds(run.ctx, scan.sample, run.req.refs, cache, str(seeds))
        finally:
            cache.close()
        files.write_atomic(run.out / j.POOL, j.jsonl_bytes(e.model_dump() for e in [*entries, *later]))
        state.seeds_info = SeedsInfo(path=str(seeds), sha256=seeds_sha, format=scan.format,
                                     usable=scan.usable, skipped=scan.skipped, pool=len(entries))
        state.pool_entries = [*entries, *later]
        self._count_added(run, later)
        run.write_run_json()

    def _count_added(self, run: RunHandle, later: list[PoolEntry]) -> None:
        for entry in later:
            run.state.stats.round(entry.round).pool_added += 1
            run.state.stats.round(entry.round).annotation_fallbacks += entry.annotator is None

    def canary_sources(self, run: RunHandle) -> list[CanarySource]:
        """Seeds that came with a response: the known-good pairs canaries are made from."""
        return [CanarySource(id=e.source, instruction=e.instruction, response=e.response,
                             domain=e.domain) for e in run.state.pool_entries if e.round == 0 and e.response]

    def rounds(self, run: RunHandle) -> str:
        state, opts, status = run.state, run.opts, "complete"
        state.dedup.prime([e for e in state.pool_entries if e.round == 0], state.dir.accepted)
        for round_no in range(1, opts.rounds + 1):
            run.ctx.round = round_no
            if round_no > 1:
                self._grow_pool(run, round_no - 1)
            examples = [e for e in state.pool_entries if e.round < round_no]
            inflight = [c for c in state.dir.inflight if c.round == round_no]
            while True:
                if inflight:
                    batch, inflight = inflight, []
                else:
                    n = self._batch_size(run, round_no)
                    if n == 0:
                        break
                    batch = self._new_batch(run, round_no, n, examples)
                run.pipeline.process(batch)
                run.write_run_json()
            run.pipeline.finish()
            run.write_run_json()
            if state.dir.accepted_in(round_no) < opts.samples:
                status = "exhausted"
                run.emit(Notice(f"round {round_no}: max attempts ({opts.attempt_cap}) reached "
                                f"with {state.dir.accepted_in(round_no)} of {opts.samples} accepted"))
        return status

    def _grow_pool(self, run: RunHandle, round_no: int) -> None:
        """Step 4c: the round's kept samples, re-annotated, join the generator's pool."""
        state = run.state
        known = {e.source for e in state.pool_entries}
        todo = [r for r in state.dir.accepted if r["round"] == round_no and r["id"] not in known]
        if not todo:
            return
        run.emit(Notice(f"round {round_no}: annotating {len(todo)} kept samples for the next round"))
        writer = j.JsonlAppender(run.out / j.POOL)
        stats = state.stats.round(round_no)

        def write(entry: PoolEntry) -> None:
            writer.append(entry.model_dump())
            state.pool_entries.append(entry)
            stats.pool_added += 1
            stats.annotation_fallbacks += entry.annotator is None

        try:
            annotate_kept(run.ctx, todo, round_no, write)
        finally:
            writer.close()
        run.write_run_json()

    def _batch_size(self, run: RunHandle, round_no: int) -> int:
        opts, state = run.opts, run.state
        needed = opts.samples - state.dir.accepted_in(round_no)
        remaining = opts.attempt_cap - state.dir.attempts[round_no]
        if needed <= 0 or remaining <= 0:
            return 0
        if opts.batch:
            return min(opts.batch, remaining)
        counts = state.stats.counts
        decided = counts.accepted + counts.rejected
        rate = counts.accepted / decided if decided >= 4 else 0.5
        return max(1, min(math.ceil(needed / max(rate, 0.05)), remaining, MAX_AUTO_BATCH))

    def _new_batch(self, run: RunHandle, round_no: int, n: int, examples: list[PoolEntry]) -> list[Candidate]:
        opts, state = run.opts, run.state
        names = {role: run.usable(role) for role in Role}
        by_domain: dict[str, list[PoolEntry]] = {}
        for entry in examples:
            by_domain.setdefault(entry.domain, []).append(entry)
        domains = sorted(by_domain)
        batch = []
        attempts = state.dir.attempts
        for attempt in range(attempts[round_no] + 1, attempts[round_no] + n + 1):
            rng = attempt_rng(opts.seed, round_no, attempt)
            draw = draw_roles(rng, names[Role.GENERATOR], names[Role.REVIEWER],
                              names[Role.ADJUDICATOR], opts.panel)
            domain = rng.choice(domains)
            pool = by_domain[domain]
            picked = rng.sample(pool, min(opts.examples_per_prompt, len(pool)))
            cand = Candidate.new(round_no, attempt, opts.seed, domain,
                                 [p.example for p in picked], draw)
            state.snapshot(cand)
            batch.append(cand)
        batch += run.canaries(round_no, n)
        attempts[round_no] += n
        state.stats.round(round_no).attempts = attempts[round_no]
        state.stats.counts.attempts += n
        return batch
