"""One batch from candidates to decisions: the stages, the τ/δ rule, adjudication of the
contested, dedup of the passed, and the records written to accepted/rejected.jsonl.

Shared by generation runs (scheduler.Run) and review-only runs, which skip generation.
"""

from __future__ import annotations

from collections.abc import Callable

from gra_local.core.candidate import Candidate
from gra_local.core.config import Role
from gra_local.core.decide import Outcome, Verdict, decide
from gra_local.core.engine.stages import (
    StageContext,
    adjudicate,
    generate,
    review_instructions,
    review_responses,
)
from gra_local.core.events import RecordDecided
from gra_local.core.quality.canary_flow import CanaryBook
from gra_local.core.quality.dedup_gate import Gate
from gra_local.core.quality.relevance import Relevance, vetoes
from gra_local.core.quality.weights import weighted_veto
from gra_local.core.records import Decision, ModelRef, Reason, RelevanceScore, Review
from gra_local.core.rundir import resume
from gra_local.core.rundir.journal import JsonlAppender

CALIBRATED = {"drop": "flagged reviewers' scores dropped"}


class BatchDecider:
    def __init__(self, ctx: StageContext, refs: dict[str, ModelRef],
                 outputs: dict[Decision, JsonlAppender], dedup: Gate, book: CanaryBook,
                 checkpoint: Callable[[], None]) -> None:
        self.ctx = ctx
        self.book = book
        self.refs = refs
        self.outputs = outputs
        self.dedup = dedup
        self.checkpoint = checkpoint
        """Called after each stage (the run rewrites run.json)."""
        self.relevance: Relevance | None = None
        """The relevance check, once the run has its threshold; None: off."""
        self.cosines: dict[str, RelevanceScore] = {}
        """Relevance figures of the batch's candidates, for their records."""

    def process(self, batch: list[Candidate], state: resume.RunDirState) -> None:
        canaries = [c for c in batch if c.canary is not None and c.id not in state.decided]
        batch = [c for c in batch if c.canary is None]
        if canaries:  # first: the weights that decide this batch include its own canaries
            self._check_relevance(canaries, state)
            review_instructions(self.ctx, canaries)
            self.checkpoint()
            review_responses(self.ctx, canaries)
            for cand in canaries:  # their panels are done: judgements out, never data
                rel = self.cosines.pop(cand.id, None)
                self.book.judged(cand, None if rel is None else (rel.cosine, rel.threshold))
                state.decided.add(cand.id)
            self.checkpoint()
        if not batch:
            return
        generate(self.ctx, batch)
        self._check_relevance(batch, state)
        self._finalize_failed(batch, state)
        self.checkpoint()
        review_instructions(self.ctx, batch)
        if self.ctx.weighted_vetoes:
            self._weighted_vetoes(batch, state)
        self._finalize_failed(batch, state)
        self.checkpoint()
        review_responses(self.ctx, batch, self.book.weights_or_even if self.ctx.options.routing else None)
        self._finalize_failed(batch, state)
        self.checkpoint()
        contested, passed = [], []
        for cand in batch:
            if cand.id in state.decided:
                continue
            scored = [rv for rv in cand.reviews if rv.score is not None]
            weights = self.book.weights([rv.model for rv in scored])
            if weights is not None:
                for rv, w in zip(scored, weights, strict=True):
                    rv.weight = w
            outcome = decide([rv.score for rv in scored if rv.score is not None],
                             self.ctx.options.tau, self.ctx.options.delta, weights)
            how = "" if weights is None else f" ({self._calibrated(scored)})"
            if outcome.verdict is Verdict.ACCEPT:
                passed.append((cand, Reason.ACCEPTED, f"μ {outcome.mean:.2f} ≥ τ and "
                               f"σ {outcome.std:.2f} ≤ δ{how}", outcome))
            elif outcome.verdict is Verdict.REJECT:
                self._finalize(cand, state, Reason.LOW_SCORE, f"μ {outcome.mean:.2f} < τ "
                               f"{self.ctx.options.tau}{how}", outcome.mean, outcome.std)
            else:
                contested.append((cand, outcome))
        self._keep_distinct(passed, state)
        if state.accepted_in(batch[0].round) >= self.ctx.options.samples:
            return  # contested ones stay in the journal for a later, larger run
        adjudicate(self.ctx, [c for c, _ in contested])
        self._finalize_failed([c for c, _ in contested], state)
        passed = []
        for cand, outcome in contested:
            if cand.id in state.decided or cand.adjudication is None:
                continue
            adj = cand.adjudication
            detail = f"σ {outcome.std:.2f} > δ; adjudicator {adj.model} scored {adj.score:.2f}"
            if adj.kept:
                passed.append((cand, Reason.ADJUDICATED_ACCEPT, detail, outcome))
            else:
                self._finalize(cand, state, Reason.ADJUDICATED_REJECT, detail, outcome.mean,
                               outcome.std)
        self._keep_distinct(passed, state)

    def _calibrated(self, scored: list[Review]) -> str:
        """How the scores were combined, for a record's reason detail."""
        if self.ctx.options.calibration == "drop":
            return CALIBRATED["drop"]
        return "weighted: " + ", ".join(f"{rv.model} {rv.weight:.2f}" for rv in scored
                                        if rv.weight is not None)

    def _weighted_vetoes(self, batch: list[Candidate], state: resume.RunDirState) -> None:
        """Phase A's fails, summed by the failing reviewers' weights (core.quality.weights):
        a sample is rejected `instruction_failed` only when they reach VETO_LEVEL."""
        for cand in batch:
            if cand.failed or cand.id in state.decided:
                continue
            given = [rv for rv in cand.reviews if rv.verdict is not None]
            weights = self.book.weights_or_even([rv.model for rv in given])
            for rv, w in zip(given, weights, strict=True):
                rv.weight = w
            veto = weighted_veto([(rv.model, w, rv.verdict.failed_fields)
                                  for rv, w in zip(given, weights, strict=True) if rv.verdict])
            if veto.rejected:
                cand.fail(Reason.INSTRUCTION_FAILED, veto.detail)

    def _check_relevance(self, cands: list[Candidate], state: resume.RunDirState) -> None:
        """After generation, before any review call: score every answer's relevance and
        veto (reason off_topic) a real candidate below the threshold. Canaries are scored
        for the check's own calibration line, never vetoed: their panel still judges them."""
        rel = self.relevance
        if rel is None or rel.threshold is None:
            return
        todo = [c for c in cands if not c.failed and c.response is not None
                and c.draft is not None and c.id not in state.decided]
        scores = rel.cosines([(c.draft.instruction, c.response or "") for c in todo
                              if c.draft is not None])
        for cand, cosine in zip(todo, scores, strict=True):
            self.cosines[cand.id] = RelevanceScore(cosine=cosine, threshold=rel.threshold)
            if cand.canary is None and vetoes(cosine, rel.threshold):
                cand.fail(Reason.OFF_TOPIC, f"cosine(instruction, response) {cosine:.4f} < "
                          f"relevance threshold {rel.threshold:.4f}")

    def _keep_distinct(self, passed: list[tuple[Candidate, Reason, str, Outcome]],
                       state: resume.RunDirState) -> None:
        """Accept what the panel passed, highest μ first, unless it repeats a seed or a
        sample already kept (step 4b); the dropped go to rejected.jsonl as duplicates.
        Once the round has its samples, the rest stay in the journal, undecided."""
        if not passed:
            return
        by_id = {c.id: (c, reason, detail, outcome) for c, reason, detail, outcome in passed}
        wanted = self.ctx.options.samples - state.accepted_in(passed[0][0].round)
        items = [(c.id, c.draft.instruction if c.draft else "", o.mean) for c, _, _, o in passed]
        for cid, dup in self.dedup.sift(items, wanted):
            cand, reason, detail, outcome = by_id[cid]
            if dup is None:
                self._finalize(cand, state, reason, detail, outcome.mean, outcome.std)
            else:
                self._finalize(cand, state, Reason.DUPLICATE,
                               f"{dup.method} similarity {dup.similarity:.3f} ≥ "
                               f"{dup.threshold} with {dup.duplicate_of}", outcome.mean,
                               outcome.std, duplicate_of=dup.duplicate_of,
                               similarity=dup.similarity)

    def _finalize_failed(self, batch: list[Candidate], state: resume.RunDirState) -> None:
        for cand in batch:
            if cand.failed and cand.id not in state.decided:
                scores = [rv.score for rv in cand.reviews if rv.score is not None]
                mean = std = None
                if scores:
                    outcome = decide(scores, self.ctx.options.tau, self.ctx.options.delta)
                    mean, std = outcome.mean, outcome.std
                self._finalize(cand, state, Reason(cand.failed), cand.failed_detail, mean, std)

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

    def _finalize(self, cand: Candidate, state: resume.RunDirState, reason: Reason, detail: str,
                  mean: float | None, std: float | None, **extra: object) -> None:
        accepted = reason in (Reason.ACCEPTED, Reason.ADJUDICATED_ACCEPT)
        if accepted and state.accepted_in(cand.round) >= self.ctx.options.samples:
            # The round has what was asked for: keep this one in the journal, undecided,
            # so that a rerun with a larger --samples takes it without redoing any call.
            return
        decision = Decision.ACCEPTED if accepted else Decision.REJECTED
        refs = {name: ref.model_copy(update={"n_gpu_layers": self.ctx.stats.model(name).n_gpu_layers})
                for name, ref in self.refs.items()}
        record = cand.to_record(decision, reason, detail, mean, std, refs, self._sampling(cand))
        rel = self.cosines.pop(cand.id, None)
        if rel is not None:
            extra["relevance"] = rel
        data = record.model_copy(update=extra).model_dump(
            mode="json", exclude=None if rel is not None else {"relevance"})
        self.outputs[decision].append(data)
        state.decided.add(cand.id)
        self.book.decided_record(data)
        if accepted:
            state.accepted.append(data)
        if cand.shared:
            self.ctx.stats.roles_shared += 1
        self.ctx.stats.record_decision(cand.round, accepted, reason.value, cand.adjudication is not None)
        self.ctx.emit(RecordDecided(cand.id, decision.value, reason.value, mean,
                                state.accepted_in(cand.round), self.ctx.options.samples))
