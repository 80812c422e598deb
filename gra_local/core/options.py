"""What a run is asked to do (`RunOptions`): the single source of its settings, which the
CLI, the app and the settings file build their flags and inputs from.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gra_local.core.surface import OptionField, Surface, option_field_of

MAX_SAMPLES = 10_000_000
MAX_AUTO_BATCH = 256
"""The most candidates a batch holds when `batch` is left to adapt (core.engine.generation)."""


class RunOptions(BaseModel):
    """What `gra-local run` was asked to do. Identity fields decide whether an existing
    output directory holds *this* run (resume) or another one (refuse).

    The single source of the run's settings: each field's default, limits and docstring
    are written here once, and its `Surface` says how the CLI, the app and the settings
    file show it (see `option_fields`)."""

    model_config = ConfigDict(extra="forbid")
    # Each field's docstring is its help (OptionField.doc reads them when first asked for).

    samples: Annotated[int, Surface("samples", metavar="N", offer=10)] = Field(ge=1, le=MAX_SAMPLES)
    """Accepted samples wanted per round."""
    max_attempts: Annotated[int | None, Surface("max attempts", metavar="M", hint="default")] = \
        Field(None, ge=1)
    """Cap on generated candidates per round, so that a weak model cannot loop forever
    (default 4 × samples)."""
    rounds: Annotated[int, Surface("rounds", metavar="R")] = Field(1, ge=1, le=100)
    """Rounds of generation: the samples a round keeps are annotated and join the pool the
    next round's generator draws its examples from."""
    panel: Annotated[int, Surface("panel", metavar="K", review=True)] = Field(3, ge=1, le=16)
    """Reviewers per sample."""
    tau: Annotated[float, Surface("tau", review=True)] = Field(8.0, ge=0.0, le=10.0)
    """Acceptance threshold τ on the panel's mean score μ (0–10): μ < τ rejects."""
    delta: Annotated[float, Surface("delta", review=True)] = Field(1.5, ge=0.0, le=10.0)
    """Disagreement threshold δ: a sample with μ ≥ τ whose scores' standard deviation σ
    is above δ is settled by the adjudicator."""
    batch: Annotated[int | None, Surface("batch", metavar="B", review=True, hint="default",
                                      review_help="pairs per stage batch (default 32)")] = \
        Field(None, ge=1, le=100_000)
    """Candidates per stage batch (default: adapts to the acceptance rate seen so far)."""
    seed: Annotated[int, Surface("seed", metavar="S", review=True)] = Field(0, ge=0, le=2**31 - 1)
    """Random seed of every draw (seed pool, examples, roles, canaries): the same seed and
    settings draw the same run."""
    seed_pool: Annotated[int, Surface("seed pool", metavar="P")] = Field(64, ge=1, le=100_000)
    """Seeds sampled uniformly from the file and annotated as examples."""
    examples_per_prompt: Annotated[int, Surface("examples/prompt", metavar="E")] = Field(3, ge=1, le=8)
    """Pool entries shown to the generator as examples in each prompt."""
    dedup_threshold: Annotated[float | None, Surface(
        "dedup at", metavar="T", review=True, quality=True, off="--no-dedup",
        off_help="keep semantic near-duplicates (no embedding model needed)",
        hint="cosine, e.g. 0.9; off: keep near-duplicates")] = Field(0.9, gt=0.0, le=1.0)
    """Cosine similarity at or above which an accepted sample counts as a duplicate of a
    seed or of a sample kept before it; off (None) turns semantic dedup off."""
    minhash: Annotated[bool, Surface(
        "minhash", review=True, quality=True, off="--no-minhash",
        off_help="skip the MinHash pass that catches near-verbatim copies before embedding")] = True
    """Catch near-verbatim copies with MinHash before embedding (cheap first pass)."""
    relevance: Annotated[bool, Surface(
        "relevance", review=True, quality=True, off="--no-relevance",
        off_help="no relevance check: every answer goes to the LLM reviewers")] = True
    """Veto, before any review call, an answer whose embedding cosine to its instruction is
    below a threshold calibrated on this run's seed pairs (good vs swapped); reason
    off_topic. Needs the embedding model; off when it or enough seed pairs are missing."""
    likelihood: Annotated[bool, Surface("likelihood", review=True, quality=True, off="--no-likelihood",
                                        off_help="no scoring model's pass over each answer")] = True
    """Score every answer with a local model's forward pass (teacher-forced log-probs, no
    sampling): how expected it is, how much its instruction explains it, whether it ends."""
    canaries: Annotated[int, Surface("canaries", metavar="N", review=True, quality=True,
                                  hint="per review batch; 0: off")] = Field(4, ge=0, le=256)
    """Known-good and code-corrupted pairs (half each) mixed into each review batch to
    measure each reviewer, made from the seeds' responses (run) or the input's pairs
    (review); none when they carry no responses; 0: off."""
    calibration: Annotated[Literal["flag", "weight", "drop"],
                           Surface("calibration", review=True, quality=True)] = "weight"
    """With canaries: weight each reviewer's scores and instruction-check vetoes by its
    canary balanced accuracy (a reviewer at chance neither sways the mean nor vetoes
    alone), only flag reviewers below the minimum accuracy in the report, or drop flagged
    reviewers' scores."""
    judge: Annotated[Literal["evidence", "panel"], Surface("judge", review=True, quality=True)] = \
        "evidence"
    """With canaries, `evidence`: a piece of evidence decides only once the canary pairs
    show it tells an original from its corruption; a panel not shown better than chance is
    not asked about samples, informative likelihood signals veto, and what nothing decides
    is kept as unverified (docs/method.md, "Which evidence decides"). `panel`: the paper's
    rule on the panel's scores, whatever the canaries say."""
    routing: Annotated[bool, Surface(
        "routing", review=True, quality=True, off="--no-routing",
        off_help="always ask the whole panel, never one more reviewer")] = True
    """Confidence routing, where replies carry score probabilities: skip the last panel
    slots when the first reviewers are sure, add one reviewer when the panel is unsure."""
    min_canary_accuracy: Annotated[float, Surface("min canary acc", metavar="A", review=True,
                                               quality=True)] = Field(0.6, ge=0.0, le=1.0)
    """Canary accuracy below which a reviewer is flagged."""

    @property
    def weighs_reviewers(self) -> bool:
        """Canary weights decide: scores weighted, instruction-check vetoes summed."""
        return self.canaries > 0 and self.calibration == "weight"

    @property
    def attempt_cap(self) -> int:
        return self.max_attempts if self.max_attempts is not None else 4 * self.samples

    def identity(self) -> dict:
        """Fields that must match to resume; samples, max_attempts, rounds and batch may change."""
        out = self.model_dump(include={"panel", "tau", "delta", "seed", "seed_pool",
                                        "examples_per_prompt", "dedup_threshold", "minhash",
                                        "relevance", "canaries", "calibration", "min_canary_accuracy",
                                        "routing", "judge"})
        # Settings of a feature that is off cannot change a decision: leave them out, so
        # that toggling them on an off feature does not refuse a resume.
        if self.dedup_threshold is None:
            out["minhash"] = None
        if not self.canaries:
            out["calibration"] = out["min_canary_accuracy"] = out["judge"] = None
        return out


@cache
def option_fields() -> tuple[OptionField, ...]:
    """Every RunOptions field, in declaration order, as the surfaces build their flags and
    inputs from it."""
    return tuple(option_field_of(name, info, RunOptions) for name, info in RunOptions.model_fields.items())


def option_field(name: str) -> OptionField:
    return next(f for f in option_fields() if f.name == name)
