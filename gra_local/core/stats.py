"""Counters that end up in run.json: per model, per stage, per decision."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from gra_local.core.backend import ChatResult


class ModelStats(BaseModel):
    loads: int = 0
    unloads: int = 0
    load_seconds: float = 0.0
    n_gpu_layers: int | None = None
    gpu_plan: str | None = None
    """Why the model runs where it does (planner reason, retries after a failed load)."""
    n_parallel: int | None = None
    """Sequences its last load decodes together (records depend on it)."""
    calls: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0
    prompt_evaluated: int = 0
    completion_tokens: int = 0
    structured_valid_first_try: int = 0
    structured_valid_after_repair: int = 0
    structured_failed: int = 0
    """Counted failures: invalid twice (first reply and the repair retry)."""
    invalid_replies: dict[str, int] = Field(default_factory=dict)
    """Every invalid reply (first tries included), by reason."""
    parse_failures: dict[str, int] = Field(default_factory=dict)
    """Counted failures by stage."""
    worker_losses: int = 0
    """Times its worker died or missed a deadline and was restarted (or dropped), over the
    whole run; whether it is dropped now, and why, is the model pool's (`ModelPool.drop_reason`)."""

    @property
    def structured_total(self) -> int:
        return self.structured_valid_first_try + self.structured_valid_after_repair + self.structured_failed

    def validity(self) -> float | None:
        total = self.structured_total
        if not total:
            return None
        return (self.structured_valid_first_try + self.structured_valid_after_repair) / total

    def first_try_validity(self) -> float | None:
        total = self.structured_total
        return self.structured_valid_first_try / total if total else None


class StageStats(BaseModel):
    seconds: float = 0.0
    calls: int = 0
    prompt_tokens: int = 0
    prompt_evaluated: int = 0
    completion_tokens: int = 0


class Counts(BaseModel):
    attempts: int = 0
    accepted: int = 0
    rejected: int = 0
    unverified: int = 0
    """Kept as unverified: no evidence was shown informative before the run ended."""
    adjudicated: int = 0
    by_reason: dict[str, int] = Field(default_factory=dict)
    pool_added: int = 0
    """Kept samples re-annotated into the generator's pool after this round (step 4c)."""
    annotation_fallbacks: int = 0
    """Of those, samples whose annotation stayed invalid: they joined with their own keywords."""


class Routing(BaseModel):
    """Confidence routing (core.engine.confidence)."""

    stopped_early: int = 0
    """Panel slots never asked for scores because the first reviewers were sure: calls saved."""
    extra_reviewers: int = 0
    """Reviewers added to unsure panels: a call each (more when one needs a retry)."""


class RunStats(BaseModel):
    counts: Counts = Field(default_factory=Counts)
    rounds: dict[str, Counts] = Field(default_factory=dict)
    models: dict[str, ModelStats] = Field(default_factory=dict)
    stages: dict[str, StageStats] = Field(default_factory=dict)
    roles_shared: int = 0
    """Candidates for which a model had to play two roles (too few models)."""
    routing: Routing = Field(default_factory=Routing)
    unscored: dict[str, int] = Field(default_factory=dict)
    """Answers the scoring model read only in part or not at all, by why (likelihood)."""
    panel_not_asked: int = 0
    """Panel slots never asked about a sample (checks and scores: two calls each at least)
    because no reviewer was shown better than chance on the canary pairs."""

    def model(self, name: str) -> ModelStats:
        return self.models.setdefault(name, ModelStats())

    def stage(self, name: str) -> StageStats:
        return self.stages.setdefault(name, StageStats())

    def round(self, number: int) -> Counts:
        return self.rounds.setdefault(str(number), Counts())

    def record_call(self, model: str, stage: str, result: ChatResult) -> None:
        evaluated = result.prompt_evaluated if result.prompt_evaluated is not None else result.prompt_tokens
        for bucket in (self.model(model), self.stage(stage)):
            bucket.calls += 1
            bucket.prompt_tokens += result.prompt_tokens
            bucket.prompt_evaluated += evaluated
            bucket.completion_tokens += result.completion_tokens
        self.model(model).seconds += result.seconds

    def record_structured(self, model: str, stage: str, outcome: str, reasons: list[str]) -> None:
        """outcome: "first_try", "repaired", "failed", or "abandoned" (the retry was not
        sent because another call settled the sample: its invalid replies count, no outcome)."""
        ms = self.model(model)
        for reason in reasons:
            ms.invalid_replies[reason] = ms.invalid_replies.get(reason, 0) + 1
        if outcome == "first_try":
            ms.structured_valid_first_try += 1
        elif outcome == "repaired":
            ms.structured_valid_after_repair += 1
        elif outcome == "failed":
            ms.structured_failed += 1
            ms.parse_failures[stage] = ms.parse_failures.get(stage, 0) + 1

    def record_decision(self, round_no: int, decision: str, reason: str, adjudicated: bool) -> None:
        """`decision`: a records.Decision value (accepted, rejected, unverified)."""
        for counts in (self.counts, self.round(round_no)):
            if decision == "accepted":
                counts.accepted += 1
            elif decision == "unverified":
                counts.unverified += 1
            else:
                counts.rejected += 1
            if adjudicated:
                counts.adjudicated += 1
            counts.by_reason = dict(Counter(counts.by_reason) + Counter({reason: 1}))
