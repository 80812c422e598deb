"""Typed records at every boundary: judge outputs, candidates in flight, output records.

The output record (`Record`) is a contract documented in the README: later tools and
users rely on its field names.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

SCORE_FIELDS = ("correctness", "clarity", "completeness", "relevance", "coherence", "ethics")
VERDICT_FIELDS = ("reasonable", "complete", "clear")
DOMAINS = ("coding", "math", "qa", "reasoning", "roleplay", "language", "creative_writing")
"""The domains of the method's seed pool; a seed naming another domain keeps none."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- what models return (validated after the grammar constrained them) ---------------


class Annotation(Strict):
    """Domain, keyword triple and summary written for a seed (or a kept sample)."""

    domain: str
    keywords: list[str] = Field(min_length=3, max_length=3)
    summary: str = Field(min_length=1)


class Example(Annotation):
    """A pool entry shown to the generator: its annotation and its instruction."""

    instruction: str = ""


class DraftInstruction(Strict):
    """The generator's first step: a new keyword triple, its summary, one instruction."""

    keywords: list[str] = Field(min_length=3, max_length=3)
    summary: str = Field(min_length=1)
    instruction: str = Field(min_length=8)


class GivenPair(Strict):
    """Review-only mode: an instruction (with whatever annotation the dataset had) that no
    generator wrote, so nothing about it is required beyond the text."""

    keywords: list[str] = Field(default_factory=list)
    summary: str = ""
    instruction: str


class InstructionVerdict(Strict):
    """Review phase A: pass/fail on reasonableness, completeness and clarity."""

    reasonable: Literal["pass", "fail"]
    complete: Literal["pass", "fail"]
    clear: Literal["pass", "fail"]

    @property
    def passed(self) -> bool:
        return all(getattr(self, f) == "pass" for f in VERDICT_FIELDS)

    @property
    def failed_fields(self) -> list[str]:
        return [f for f in VERDICT_FIELDS if getattr(self, f) == "fail"]


class Scores(Strict):
    """Review phase B (and adjudication): six integer scores 0–10 and short feedback."""

    correctness: int = Field(ge=0, le=10)
    clarity: int = Field(ge=0, le=10)
    completeness: int = Field(ge=0, le=10)
    relevance: int = Field(ge=0, le=10)
    coherence: int = Field(ge=0, le=10)
    ethics: int = Field(ge=0, le=10)
    feedback: str = ""

    @property
    def mean(self) -> float:
        return sum(getattr(self, f) for f in SCORE_FIELDS) / len(SCORE_FIELDS)


# --- provenance --------------------------------------------------------------------


class ModelRef(Strict):
    """Which model played a role: name, GGUF sha256 and quantization; for a model behind
    a server, which server served it (credential-free) and under which model id."""

    name: str
    sha256: str | None = None
    """None for an endpoint model (no file here)."""
    quantization: str | None = None
    """None for an endpoint model."""
    n_gpu_layers: int | None = None
    endpoint: str | None = None
    """Endpoint models: scheme://host:port/path of each server, comma-separated; never a
    credential."""
    server: str | None = None
    """Endpoint models: the server kind (llama.cpp, vllm, ollama, lmstudio, openai)."""
    server_version: str | None = None
    """Endpoint models: the version the server reports (None: it reports none)."""
    served_model: str | None = None
    """Endpoint models: the model id the server serves."""

    @model_serializer(mode="wrap")
    def _leave_out_unserved(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A GGUF model's ref has no endpoint fields: its records stay as they were."""
        out: dict[str, Any] = handler(self)
        if self.endpoint is None:
            for key in ENDPOINT_REF_FIELDS:
                out.pop(key, None)
        return out


ENDPOINT_REF_FIELDS = ("endpoint", "server", "server_version", "served_model")


class Tokens(Strict):
    prompt: int = 0
    completion: int = 0

    def add(self, prompt: int, completion: int) -> None:
        self.prompt += prompt
        self.completion += completion


class Review(Strict):
    """One reviewer's view of a sample; `scores` stays None when phase B never ran."""

    model: str
    verdict: InstructionVerdict | None = None
    scores: Scores | None = None
    score: float | None = None
    """Mean of the six scores: each the expected value of its distribution where the
    reply's score probabilities are known (`score_probs`), else the sampled one."""
    failures: int = 0  # invalid outputs from this reviewer (each after one repair retry)
    sampled_score: float | None = None
    """Mean of the six sampled scores (`scores`), kept beside `score`."""
    score_probs: dict[str, dict[str, float]] | None = None
    """Per criterion, score ("0"–"10") → probability under the reviewer's own logits,
    restricted to what the grammar allowed (core.quality.expected); None when unknown (a
    server without token probabilities), and then `score` is the sampled mean."""
    pass_probs: dict[str, float] | None = None
    """Per instruction-check field, the probability of "pass" (None: unknown)."""
    weight: float | None = None
    """This reviewer's weight in the decision (canary calibration); None: unweighted."""
    extra: bool = False
    """A reviewer drawn beyond the panel because the panel was unsure (routing)."""
    skipped: bool = False
    """Never asked for scores: the first reviewers were sure (routing)."""


class Adjudication(Strict):
    model: str
    scores: Scores
    score: float
    kept: bool


class Decision(str, Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNVERIFIED = "unverified"
    """No evidence was yet shown to tell good from bad when the run ended: kept, not judged."""


class Reason(str, Enum):
    ACCEPTED = "accepted"  # μ ≥ τ and σ ≤ δ
    ADJUDICATED_ACCEPT = "adjudicated_accept"  # σ > δ, adjudicator score ≥ τ
    ADJUDICATED_REJECT = "adjudicated_reject"  # σ > δ, adjudicator score < τ
    LOW_SCORE = "low_score"  # μ < τ
    INSTRUCTION_FAILED = "instruction_failed"  # a reviewer failed the instruction (phase A)
    GENERATION_FAILED = "generation_failed"  # the generator gave no valid sample
    REVIEW_FAILED = "review_failed"  # not enough valid reviews after replacements
    ADJUDICATION_FAILED = "adjudication_failed"  # no adjudicator gave a valid score
    DUPLICATE = "duplicate"  # accepted by the panel, too similar to a seed or a kept sample
    TOO_LONG = "too_long"  # a prompt with its reply budget exceeds a model's context
    OFF_TOPIC = "off_topic"  # cosine(instruction, response) below the relevance threshold
    EVIDENCE_ACCEPT = "evidence_accept"  # panel not informative; every informative cheap check passed
    EVIDENCE_REJECT = "evidence_reject"  # an informative likelihood signal below its threshold
    UNVERIFIED = "unverified"  # no piece of evidence informative when the run ended


class RelevanceScore(Strict):
    """The relevance check's figures for one record (core.quality.relevance)."""

    cosine: float
    threshold: float


class LikelihoodScore(Strict):
    """What the scoring model read in a response (core.quality.likelihood): log-probs of
    the given tokens, teacher-forced, no sampling."""

    model: str
    tokens: int
    """Response tokens scored (fewer than the response's when `truncated`)."""
    mean_logprob: float
    """Mean log p(token | instruction's chat, earlier tokens): how expected the answer is."""
    pmi: float
    """Mean log-prob after the instruction minus after an empty instruction (= −log IFD):
    how much the instruction explains the answer; ≤ 0 when the answer ignores it."""
    end_logprob: float | None
    """log p(end of turn | chat + response): low when the answer stops mid-way; None when
    the template has no end-of-turn token or the response was cut."""
    low_tail: float
    """The 5th-percentile token log-prob: a few very unlikely tokens (a changed number)."""
    truncated: bool = False


class Arithmetic(BaseModel):
    """What the arithmetic check found in an answer (core.quality.arithmetic)."""

    equations: int = Field(ge=1)
    """Chains of equal signs read and worked again."""
    wrong: list[str] = Field(default_factory=list)
    """Those that do not hold, as written, each with what its first side comes to."""

    @property
    def share_right(self) -> float:
        return round((self.equations - len(self.wrong)) / self.equations, 4)


class Record(Strict):
    """One candidate, as written to accepted.jsonl or rejected.jsonl."""

    id: str
    round: int
    attempt: int
    instruction: str
    response: str
    domain: str
    keywords: list[str]
    summary: str
    decision: Decision
    reason: Reason
    reason_detail: str
    reviews: list[Review]
    mean: float | None
    std: float | None
    adjudication: Adjudication | None
    generator: str
    reviewers: list[str]
    adjudicator: str | None
    roles_shared: bool  # a model played two roles for this sample (too few models)
    models: list[ModelRef]
    sampling: dict[str, dict[str, float | int]]
    seed: int
    tokens: Tokens
    created_at: str
    decided_at: str
    duplicate_of: str | None = None
    """For reason `duplicate`: the seed ("seed line 3") or record id it repeats."""
    similarity: float | None = None
    """For reason `duplicate`: cosine similarity (or MinHash Jaccard) to `duplicate_of`."""
    source: str | None = None
    """Review-only mode: where the pair came from ("data.jsonl line 12")."""
    relevance: RelevanceScore | None = None
    """The relevance check's cosine and threshold; left out of the file when it did not run."""
    likelihood: LikelihoodScore | None = None
    """The likelihood signals of the response; left out of the file when it was not scored."""
    arithmetic: Arithmetic | None = None
    """The equations the response writes out, worked again; left out when it writes none."""
    margin: float | None = None
    """Where the cheap evidence decided: its decision score (≥ 0: every informative check
    passed; 1: as typical as the run's canary originals; docs/method.md). Left out of the
    file otherwise."""


# --- calibration canaries (made by core.quality.canaries, never written as data) -----


class CanaryKind(str, Enum):
    GOOD = "good"
    SWAPPED = "swapped"  # the answer of another sample (another domain preferred)
    TRUNCATED = "truncated"  # cut to 20–50 % of its words, at a word boundary
    NUMBERS_CHANGED = "numbers_changed"  # every number changed, format kept
    CROSS_DOMAIN = "cross_domain"  # instruction and answer from different domains
    INJECTION = "injection"  # a wrong answer telling the judge to pass it, or a forged review block


class Canary(BaseModel):
    """One canary. `id` is unique within a call of :func:`make_canaries` and, through a
    nonce drawn from its rng, across calls with differently seeded rngs."""

    id: str
    kind: CanaryKind
    instruction: str
    response: str
    domain: str  # the instruction's domain
    sources: list[str] = Field(default_factory=list)  # instruction's source, then the answer's
    expected_good: bool  # True only for kind `good`
    pair: str | None = None
    """The canary made from the same original: a corruption names its original and the
    original its corruption (None: an unpaired good one). Pairs are judged by one panel and
    need no trust in the original: a piece of evidence is right when it ranks the original
    above its corruption."""
