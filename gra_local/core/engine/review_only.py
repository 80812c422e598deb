"""Review-only mode: the reviewer panel and the adjudicator over a dataset the user already
has, writing the same accepted/rejected files as a generation run.

Nothing is generated or annotated: every instruction/response pair of the input becomes a
candidate whose generator is "" and whose `source` names the file and line. The pipeline
(relevance, review A, review B, the decision, adjudication, dedup, records) is the
generation run's own; only the source of candidates differs (source.Source).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gra_local.core.candidate import Candidate, attempt_rng
from gra_local.core.config import Role
from gra_local.core.engine.request import RunRequest
from gra_local.core.engine.source import RunHandle
from gra_local.core.errors import SeedError
from gra_local.core.events import Notice
from gra_local.core.options import MAX_SAMPLES, RunOptions
from gra_local.core.quality.canaries import CanarySource
from gra_local.core.records import GivenPair
from gra_local.core.roles import draw_roles
from gra_local.core.rundir.report import SeedsInfo
from gra_local.core.seeds.formats import detect_format, iter_records
from gra_local.core.seeds.scan import Seed, SkippedRecord, record_to_seed

REVIEW_BATCH = 32
"""Pairs per batch when --batch is not given: every pair is reviewed, so no adaptive size."""


@dataclass
class ReviewData:
    path: Path
    format: str
    pairs: list[Seed] = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)
    without_response: list[int] = field(default_factory=list)  # lines


def read_review_data(path: Path) -> ReviewData:
    """Every usable pair of the file, in order; refuses a file with none, or with two
    records sharing an `id`, naming the lines."""
    path = Path(path)
    data = ReviewData(path, detect_format(path))
    ids: dict[str, int] = {}
    for index, (line, raw) in enumerate(iter_records(path, data.format)):
        if isinstance(raw, dict) and isinstance(raw.get("id"), (str, int)):
            key = str(raw["id"])
            if key in ids:
                raise SeedError(f"{path} line {line}: id {key!r} repeats line {ids[key]}; "
                                "give every record its own id (or none)")
            ids[key] = line
        item = record_to_seed(raw, line, index)
        if isinstance(item, SkippedRecord):
            data.skipped.append(item)
        elif not item.response:
            data.without_response.append(line)
        else:
            data.pairs.append(item)
    if not data.pairs:
        if data.without_response:
            raise SeedError(f"{path}: no record has a response (line {data.without_response[0]} "
                            "and the rest hold only an instruction); review-only mode judges "
                            "instruction/response pairs: give each record an output, response "
                            "or answer field, or an assistant turn")
        raise SeedError(f"{path}: no usable records ({len(data.skipped)} skipped"
                        + (f"; line {data.skipped[0].line}: {data.skipped[0].reason}"
                           if data.skipped else "") + ")")
    return data


def pair_id(seed: Seed) -> str:
    return f"d-{seed.index + 1:06d}"


def judge_every_pair(opts: RunOptions) -> RunOptions:
    """Review options: every pair is judged, so no sample target may end the run early."""
    return opts.model_copy(update={"samples": MAX_SAMPLES})


class ReviewSource:
    """The source of a review run (source.Source): the input's pairs, in file order, in
    one round, in batches of --batch (REVIEW_BATCH by default)."""

    mode: Literal["run", "review"] = "review"
    roles: tuple[Role, ...] = (Role.REVIEWER, Role.ADJUDICATOR)

    def __init__(self) -> None:
        self.pairs: list[Seed] = []

    def options(self, opts: RunOptions) -> RunOptions:
        return judge_every_pair(opts)

    def scan(self, req: RunRequest) -> ReviewData:
        return read_review_data(req.seeds)

    def prepare(self, run: RunHandle, seeds_sha: str, scan: ReviewData | None) -> None:
        data = scan if scan is not None else read_review_data(run.req.seeds)
        for skipped in data.skipped[:5]:
            run.emit(Notice(f"{data.path} line {skipped.line}: skipped, {skipped.reason}"))
        if data.without_response:
            run.emit(Notice(f"{data.path}: {len(data.without_response)} records have no "
                            f"response and are not reviewed (first: line "
                            f"{data.without_response[0]})"))
        self.pairs = data.pairs
        run.state.seeds_info = SeedsInfo(
            path=str(data.path), sha256=seeds_sha, format=data.format, usable=len(data.pairs),
            skipped=len(data.skipped), without_response=len(data.without_response), mode="review")

    def rounds(self, run: RunHandle) -> str:
        state = run.state
        run.ctx.round = 1
        state.dedup.prime([], state.dir.accepted)
        inflight = [c for c in state.dir.inflight if c.round == 1]
        if inflight:
            run.pipeline.process(inflight)
            run.write_run_json()
        known = state.dir.decided | {c.id for c in inflight}
        todo = [p for p in self.pairs if pair_id(p) not in known]
        size = run.opts.batch or REVIEW_BATCH
        for start in range(0, len(todo), size):
            batch = [self._candidate(run, p) for p in todo[start:start + size]]
            for cand in batch:
                state.snapshot(cand)
            state.dir.attempts[1] = max(state.dir.attempts[1], max(c.attempt for c in batch))
            state.stats.counts.attempts += len(batch)
            state.stats.round(1).attempts += len(batch)
            batch += run.canaries(1)  # not attempts: canaries are never data
            run.pipeline.process(batch)
            run.write_run_json()
        run.pipeline.finish()
        run.write_run_json()
        return "complete"

    def canary_sources(self, run: RunHandle) -> list[CanarySource]:
        """The input's own pairs: here "known good" means only "as given", so the corrupted
        canaries are the sharper test of a reviewer."""
        return [CanarySource(id=f"{run.req.seeds.name} line {p.line}", instruction=p.instruction,
                             response=p.response or "", domain=p.domain or "")
                for p in self.pairs]

    def _candidate(self, run: RunHandle, pair: Seed) -> Candidate:
        attempt = pair.index + 1
        opts = run.opts
        draw = draw_roles(attempt_rng(opts.seed, 1, attempt), [""], run.usable(Role.REVIEWER),
                          run.usable(Role.ADJUDICATOR), opts.panel)
        cand = Candidate.new(1, attempt, opts.seed, pair.domain or "", [], draw)
        assert pair.response is not None
        return cand.model_copy(update={
            "id": pair_id(pair),
            "draft": GivenPair(instruction=pair.instruction, keywords=pair.keywords or [],
                               summary=pair.summary or ""),
            "response": pair.response,
            "source": f"{Path(run.req.seeds).name} line {pair.line}",
        })
