"""A candidate sample in flight: what the stages fill in and the journal snapshots."""

from __future__ import annotations

import random
import zlib
from datetime import datetime, timezone

from pydantic import BaseModel, Field

from gra_local.core.records import (
    Adjudication,
    Canary,
    Decision,
    DraftInstruction,
    Example,
    GivenPair,
    LikelihoodScore,
    ModelRef,
    Reason,
    Record,
    RelevanceScore,
    Review,
    Tokens,
)
from gra_local.core.roles import RoleDraw


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def candidate_id(round_no: int, attempt: int) -> str:
    return f"r{round_no}-{attempt:06d}"


def attempt_rng(seed: int, round_no: int, attempt: int) -> random.Random:
    """Per-candidate RNG: draws do not depend on batch size or on a resume."""
    return random.Random(f"{seed}/{round_no}/{attempt}")


class Candidate(BaseModel):
    id: str
    round: int
    attempt: int
    seed: int
    domain: str
    examples: list[Example]
    generator: str
    reviews: list[Review]  # one per panel slot; a slot's model changes when it fails
    adjudicators: list[str]
    replacements: list[str]
    shared: bool
    draft: DraftInstruction | GivenPair | None = None
    source: str | None = None
    """Review-only mode: where the pair came from; its generator is then ""."""
    canary: Canary | None = None
    """Set on calibration canaries: reviewed like a sample, never decided or written as data."""
    response: str | None = None
    likelihood: LikelihoodScore | None = None
    """The scoring model's reading of the response (core.quality.likelihood)."""
    relevance: RelevanceScore | None = Field(default=None, exclude=True)
    """The relevance check's figures (evidence the decision reads); recomputed on resume,
    never journaled."""
    faulted: str | None = Field(default=None, exclude=True)
    """Why a call of it got no answer (its model was dropped after repeated worker losses):
    a fault, never a verdict. Left undecided for the rest of the session; never journaled,
    so a rerun finishes it from its last snapshot."""
    failed: str | None = None  # a Reason value once the candidate is rejected early
    failed_detail: str = ""
    failed_reviewers: list[str] = Field(default_factory=list)
    adjudication: Adjudication | None = None
    adjudication_tries: int = 0
    tokens: Tokens = Field(default_factory=Tokens)
    created_at: str = Field(default_factory=now)

    @classmethod
    def new(cls, round_no: int, attempt: int, run_seed: int, domain: str,
            examples: list[Example], draw: RoleDraw) -> Candidate:
        return cls(
            id=candidate_id(round_no, attempt), round=round_no, attempt=attempt,
            seed=zlib.crc32(f"{run_seed}/{round_no}/{attempt}".encode()) & 0x7FFFFFFF,
            domain=domain, examples=examples, generator=draw.generator,
            reviews=[Review(model=name) for name in draw.panel],
            adjudicators=draw.adjudicators, replacements=draw.replacements, shared=draw.shared,
        )

    def call_seed(self, *parts: object) -> int:
        return zlib.crc32("/".join(map(str, (self.seed, *parts))).encode()) & 0x7FFFFFFF

    def fail(self, reason: Reason, detail: str) -> None:
        if self.failed is None:
            self.failed = reason.value
            self.failed_detail = detail

    def to_record(self, decision: Decision, reason: Reason, detail: str,
                  mean: float | None, std: float | None, refs: dict[str, ModelRef],
                  sampling: dict[str, dict[str, float | int]]) -> Record:
        used = [self.generator, *(r.model for r in self.reviews), *self.failed_reviewers]
        if self.adjudication is not None:
            used.append(self.adjudication.model)
        names = list(dict.fromkeys(used))
        return Record(
            id=self.id, round=self.round, attempt=self.attempt,
            instruction=self.draft.instruction if self.draft else "",
            response=self.response or "",
            domain=self.domain,
            keywords=self.draft.keywords if self.draft else [],
            summary=self.draft.summary if self.draft else "",
            decision=decision, reason=reason, reason_detail=detail,
            reviews=self.reviews, mean=mean, std=std, adjudication=self.adjudication,
            generator=self.generator, reviewers=[r.model for r in self.reviews],
            adjudicator=self.adjudication.model if self.adjudication else None,
            roles_shared=self.shared,
            models=[refs[n] for n in names if n in refs],
            sampling=sampling, seed=self.seed, tokens=self.tokens,
            created_at=self.created_at, decided_at=now(), source=self.source,
        )
