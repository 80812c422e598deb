"""One batch through the round, forward, in one place (docs/method.md, "One round"):

    generate → relevance → likelihood → instruction checks → scores → decision →
    adjudication of the contested → dedup of the passed → records

Stages (stages.py) add evidence to candidates; after each, the decision
(core.quality.decision.decide, the only thing that decides) settles what the evidence so
far allows, and the rejected are written at once. Canaries go through the same stages
first, marked as canaries: never decided, their panels' judgements become the calibration
that decides the batch's samples. Review mode runs the same pipeline; its candidates are
given pairs, so the generate stage has nothing to do.

Which evidence decides is measured (core.quality.evidence): samples go to the LLM panel
only while one of its reviewers is shown informative on the canary pairs. A sample that
nothing informative can decide yet is held and joins the next batch, after that batch's
canaries; `finish` keeps those still held when the round ends as unverified.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from gra_local.core.candidate import Candidate
from gra_local.core.config import Role
from gra_local.core.engine import stages
from gra_local.core.engine.confidence import Routing
from gra_local.core.engine.state import RunState
from gra_local.core.engine.waves import StageContext
from gra_local.core.events import EventSink, RecordDecided
from gra_local.core.quality import arithmetic
from gra_local.core.quality.decision import Decision, Reached, Rule, Status, decide
from gra_local.core.records import Decision as Written
from gra_local.core.records import Reason


class Pipeline:
    def __init__(self, state: RunState, emit: EventSink, stop: threading.Event,
                 checkpoint: Callable[[], None], pause: threading.Event | None = None,
                 live_text: bool = False) -> None:
        self.state = state
        self.rule = Rule.of(state.opts)
        self.ctx = StageContext(state.opts, state.req.registry, state.pool, state.stats, emit,
                                stop, state.snapshot, pause=pause, live_text=live_text,
                                decide=self.decide)
        """What the stages run with: the models, the counters, the journal, the decision."""
        self.checkpoint = checkpoint
        """Called after each stage (the run rewrites run.json)."""
        self.routing = Routing(self.rule, state.book.calibration) if state.opts.routing else None
        self.held: list[Candidate] = []
        """Samples nothing informative could decide yet: they join the next batch."""
        self.faulted: dict[str, str] = {}
        """Candidates left undecided by a fault in this session (id → why): the run ends
        interrupted, and a rerun finishes them."""

    def decide(self, cand: Candidate, reached: Reached) -> Decision:
        """The decision on `cand` under the calibration the canaries have given so far."""
        return decide(cand, self.rule, self.state.book.calibration(), reached)

    def process(self, batch: list[Candidate]) -> None:
        decided = self.state.dir.decided
        canaries = [c for c in batch if c.canary is not None and c.id not in decided]
        fresh = {c.id for c in batch}
        samples = [c for c in self.held if c.id not in decided and c.id not in fresh]
        samples += [c for c in batch if c.canary is None]
        self.held = []
        if canaries:  # first: the weights that decide this batch include its own canaries
            self._gather(canaries)
            for cand in canaries:  # their panels are done: judgements out, never data
                self.state.book.judged(cand)
                decided.add(cand.id)
            self.checkpoint()
        if samples:
            self._gather(samples)
            self._conclude(self._live(samples))

    def _gather(self, group: list[Candidate]) -> None:
        """The evidence stages, each followed by what it settles."""
        stages.generate(self.ctx, self._live(group))
        stages.relevance(self._live(group), self.state.relevance)
        stages.likelihood(self.ctx, self._live(group), self.state.scorer)
        self._settle(group, Reached.GENERATED)
        if not self.state.book.calibration().panel_decides:
            group = [c for c in group if c.canary is not None]  # samples: not the panel's
        stages.instruction_checks(self.ctx, self._live(group))
        self._settle(group, Reached.CHECKED)
        stages.scores(self.ctx, self._live(group), self.routing)
        self._settle(group, Reached.CHECKED)  # what failed in phase B; scores decide next

    def _conclude(self, batch: list[Candidate]) -> None:
        """Scores decide; the passed are kept unless they repeat; the contested go to an
        adjudicator unless the round already has its samples."""
        passed, contested = self._decide(batch, Reached.SCORED)
        self._keep_distinct(passed)
        if not batch or self.state.dir.accepted_in(batch[0].round) >= self.ctx.options.samples:
            return  # contested ones stay in the journal for a later, larger run
        stages.adjudicate(self.ctx, contested)
        self._settle(contested, Reached.CHECKED, checkpoint=False)  # failed adjudications
        passed, _ = self._decide(self._live(contested), Reached.ADJUDICATED)
        self._keep_distinct(passed)

    def finish(self) -> None:
        """The round is over: what is still held is kept as unverified (unless the round
        has its samples: then it stays in the journal, for a rerun that asks for more)."""
        held = self._live(self.held)
        if held and self.state.dir.accepted_in(held[0].round) >= self.ctx.options.samples:
            held = []
        for cand in held:
            decision = self.decide(cand, Reached.SCORED)
            if decision.status is Status.UNVERIFIED:
                self._write(cand, decision)
        self.held = []

    def _live(self, cands: list[Candidate]) -> list[Candidate]:
        """Not decided yet, nor left by a fault (`Candidate.faulted`: for a rerun)."""
        for cand in cands:
            if cand.faulted and cand.id not in self.faulted:
                self.faulted[cand.id] = cand.faulted
        return [c for c in cands if c.id not in self.state.dir.decided and not c.faulted]

    def _settle(self, cands: list[Candidate], reached: Reached, checkpoint: bool = True) -> None:
        """Write every rejection the evidence up to the instruction checks settles (a
        failure, an off-topic answer, a veto); the weights that decided go to the reviews."""
        for cand in self._live(cands):
            decision = self.decide(cand, reached)
            _weigh(cand, decision)
            if decision.status is Status.REJECT:
                self._write(cand, decision)
        if checkpoint:
            self.checkpoint()

    def _decide(self, cands: list[Candidate], reached: Reached,
                ) -> tuple[list[tuple[Candidate, Decision]], list[Candidate]]:
        """Rejections written; (passed, contested) returned."""
        passed, contested = [], []
        for cand in cands:
            decision = self.decide(cand, reached)
            _weigh(cand, decision)
            if decision.status is Status.ACCEPT:
                passed.append((cand, decision))
            elif decision.status is Status.REJECT:
                self._write(cand, decision)
            elif decision.status is Status.CONTESTED:
                contested.append(cand)
            elif decision.status is Status.UNVERIFIED:
                self.held.append(cand)
        return passed, contested

    def _keep_distinct(self, passed: list[tuple[Candidate, Decision]]) -> None:
        """Accept what passed, highest μ (or evidence margin) first, unless it repeats a seed or a sample
        already kept (step 4b); the dropped go to rejected.jsonl as duplicates. Once the
        round has its samples, the rest stay in the journal, undecided."""
        if not passed:
            return
        by_id = {c.id: (c, d) for c, d in passed}
        wanted = self.ctx.options.samples - self.state.dir.accepted_in(passed[0][0].round)
        items = [(c.id, c.draft.instruction if c.draft else "", _rank(d)) for c, d in passed]
        for cid, dup in self.state.dedup.sift(items, wanted):
            cand, decision = by_id[cid]
            if dup is None:
                self._write(cand, decision)
            else:
                self._write(cand, Decision(
                    Status.REJECT, Reason.DUPLICATE,
                    f"{dup.method} similarity {dup.similarity:.3f} ≥ {dup.threshold} with "
                    f"{dup.duplicate_of}", decision.mean, decision.std, margin=decision.margin),
                    duplicate_of=dup.duplicate_of, similarity=dup.similarity)

    def _sampling(self, cand: Candidate) -> dict[str, dict[str, float | int]]:
        reg = self.ctx.registry
        out = {}
        if cand.generator:  # review-only pairs have no generator
            out["generator"] = reg.get(cand.generator).sampling_for(Role.GENERATOR).model_dump()
        for rv in cand.reviews:
            out[f"reviewer:{rv.model}"] = reg.get(rv.model).sampling_for(Role.REVIEWER).model_dump()
        if cand.adjudication:
            name = cand.adjudication.model
            out[f"adjudicator:{name}"] = reg.get(name).sampling_for(Role.ADJUDICATOR).model_dump()
        return out

    def _write(self, cand: Candidate, decision: Decision, **extra: object) -> None:
        """The candidate's record, to accepted.jsonl or rejected.jsonl."""
        state, opts = self.state, self.ctx.options
        assert decision.reason is not None
        accepted = decision.status is Status.ACCEPT
        if accepted and state.dir.accepted_in(cand.round) >= opts.samples:
            # The round has what was asked for: keep this one in the journal, undecided,
            # so that a rerun with a larger --samples takes it without redoing any call.
            return
        written = Written.ACCEPTED if accepted else Written.UNVERIFIED \
            if decision.status is Status.UNVERIFIED else Written.REJECTED
        refs = {name: ref.model_copy(update={"n_gpu_layers": state.stats.model(name).n_gpu_layers})
                for name, ref in state.req.refs.items()}
        record = cand.to_record(written, decision.reason, decision.detail, decision.mean,
                                decision.std, refs, self._sampling(cand))
        if cand.relevance is not None:
            extra["relevance"] = cand.relevance
        if cand.likelihood is not None:
            extra["likelihood"] = cand.likelihood
        if (sums := arithmetic.check(record.response)) is not None:
            extra["arithmetic"] = sums
        if decision.margin is not None:
            extra["margin"] = decision.margin
        left_out = {k for k in ("relevance", "likelihood", "arithmetic", "margin") if k not in extra}
        data = record.model_copy(update=extra).model_dump(mode="json", exclude=left_out or None)
        state.outputs[written].append(data)
        state.dir.decided.add(cand.id)
        state.book.decided_record(data)
        if accepted:
            state.dir.accepted.append(data)
        if cand.shared:
            state.stats.roles_shared += 1
        state.stats.record_decision(cand.round, written.value, decision.reason.value,
                                    cand.adjudication is not None)
        if decision.reason in (Reason.EVIDENCE_ACCEPT, Reason.EVIDENCE_REJECT, Reason.UNVERIFIED):
            state.stats.panel_not_asked += sum(rv.verdict is None and rv.scores is None
                                               for rv in cand.reviews)
        self.ctx.emit(RecordDecided(cand.id, written.value, decision.reason.value, decision.mean,
                                    state.dir.accepted_in(cand.round), opts.samples))


def _rank(decision: Decision) -> float:
    """Which of two twins dedup keeps: the panel's μ, else the cheap evidence's margin."""
    if decision.mean is not None:
        return decision.mean
    return decision.margin if decision.margin is not None else 0.0


def _weigh(cand: Candidate, decision: Decision) -> None:
    for slot, weight in decision.weights:
        cand.reviews[slot].weight = weight
