"""run.json as a typed model: what the engine writes after every batch, and what resume, the
CLI summary, the results screen, browsing and export read back.

Writing: engine.run_json fills a RunReport and writes `model_dump(mode="json")`. The field
order below is the file's key order, and every section is set on writing, so the file is
byte for byte what it was when run.json was built as a dict. Reading: `read_report`
validates a file into the same model. Every section has a default, because schema-1 run
directories (and schema-2 ones made before a section existed) lack some sections and are
still browsed, exported and resumed; a section that is there is whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, ValidationError, model_serializer

from gra_local.core.config import ModelSpec
from gra_local.core.errors import OutputError
from gra_local.core.records import ModelRef, Reason
from gra_local.core.rundir.calibration_report import CalibrationSection
from gra_local.core.rundir.journal import read_json
from gra_local.core.stats import Counts, Routing, RunStats

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
"""Schema 1 (before dedup, canaries and review-only mode) has the same record fields
minus a few optional ones, so its runs can be read, exported and resumed."""


class RunIdentity(BaseModel):
    """What must match for a run directory to be resumed rather than refused. Its leaves
    stay mappings: resume compares them key by key with today's settings, and an older
    schema's identity holds fewer options (resume.migrate_identity fills them in)."""

    seeds_sha256: str
    """Fingerprint of the seed (or, for review-only runs, the input) file."""
    options: dict[str, Any]
    """RunOptions.identity(): the options that change decisions."""
    models: dict[str, dict[str, Any]]
    """Per model (`model_identity`): GGUF sha256 and the models-file settings that change its
    output; for an endpoint model also what its servers said at start (`served`)."""
    mode: Literal["run", "review"] | None = None
    """`gra-local run` or `gra-local review`: one directory never mixes the two. None in
    run.json files written before the mode was recorded (then it is not checked)."""


NOT_IN_IDENTITY = frozenset({"name", "path", "sha256", "api_key_env", "max_in_flight"})
"""ModelSpec keys left out of a model's identity: the name is its key, the file is named by
its sha256, and where a key comes from or how many requests are in flight change no output."""


def model_identity(spec: ModelSpec, ref: ModelRef) -> dict[str, Any]:
    """One model's part of RunIdentity.models: its GGUF sha256 and the models-file settings
    that change its output; for an endpoint model also what its servers said when the run
    started (`served`: credential-free URLs, kind, version, the model id), so a directory
    pointed at another server or model is refused like any other change of settings."""
    out: dict[str, Any] = {"sha256": ref.sha256,
                           **spec.model_dump(mode="json", exclude=set(NOT_IN_IDENTITY))}
    if spec.is_endpoint:
        out["served"] = {"endpoint": ref.endpoint, "server": ref.server,
                         "server_version": ref.server_version, "model": ref.served_model}
    return out


class WorkerFailures(BaseModel):
    """A model whose worker process was lost during the run (crash, OOM kill, deadline)."""

    losses: int
    """Workers lost over the whole run (each was killed and restarted)."""
    dropped: str | None = None
    """Why the model was dropped for the rest of the last session (None: it was not)."""


class RunConfig(BaseModel):
    """What the run was started with, as given. Only `options` is read back (the dataset
    card), so the rest may be missing from a hand-made file."""

    seeds: str | None = None
    """The seed file (the input file for review-only runs)."""
    models_file: str | None = None
    """Where the models came from: a models file's path, or the embedded default."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Every RunOptions field as the run saw it. A mapping, not RunOptions: older schemas
    recorded fewer options, and the dataset card lists exactly what was recorded instead of
    today's defaults for the rest."""
    models: list[dict[str, Any]] = Field(default_factory=list)
    """The models file's entries (ModelSpec dumps). Mappings: nothing reads them back, and a
    models file of another version may hold keys today's ModelSpec refuses."""


class Versions(BaseModel):
    """Software the run ran on, for reproducing it."""

    gra_local: str
    llama_cpp_python: str | None
    """None when llama-cpp-python is not installed in the engine's process."""
    python: str
    platform: str


class SeedsInfo(BaseModel):
    """The seed file as scanned (generation) or the input file as read (review-only). Empty
    until the file is read; a resumed run carries the first session's figures over. Keys the
    run did not record are left out of the file, so the three shapes stay as they were."""

    path: str | None = None
    sha256: str | None = None
    format: str | None = None
    """Detected file format (jsonl, json, csv, …)."""
    usable: int | None = None
    """Records that became seeds (generation) or instruction/response pairs (review)."""
    skipped: int | None = None
    """Records that could not be read as a seed or pair."""
    pool: int | None = None
    """Generation only: seeds annotated into the generator's pool."""
    without_response: int | None = None
    """Review only: records with an instruction but no response, not reviewed."""
    mode: Literal["review"] | None = None
    """"review" for a review-only run; absent for generation."""

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class DedupOff(BaseModel):
    """Semantic dedup was off (--no-dedup, or a schema-1 run)."""

    enabled: Literal[False] = False


class DedupOn(BaseModel):
    """Semantic dedup against the seeds and every sample kept before."""

    enabled: Literal[True] = True
    embedder: str
    """Name of the sentence-embedding model."""
    embedder_sha256: str
    threshold: float
    """Cosine similarity at or above which a sample counts as a duplicate."""
    references: int
    """Seeds and kept samples the index compared new samples with."""


class RelevanceSection(BaseModel):
    """The relevance check (core.quality.relevance): its threshold, calibrated once at the
    run's start and read back on resume, and what it vetoed."""

    enabled: bool
    """False: off for the run (`note` says why)."""
    threshold: float | None = None
    """Cosine(instruction, response) below which an answer is vetoed `off_topic`."""
    source: str | None = None
    """What the threshold was calibrated on (good vs swapped pairs, with counts)."""
    balanced_accuracy: float | None = None
    """Of the threshold on its calibration pairs."""
    embedder: str | None = None
    vetoed: int = 0
    """Candidates rejected off_topic (canaries are never vetoed)."""
    calls_saved: int = 0
    """Review calls the vetoed candidates would have made at least: panel × 2 each."""
    note: str | None = None


class LikelihoodSection(BaseModel):
    """Likelihood evidence (core.quality.likelihood): which model read the answers."""

    enabled: bool
    """False: off for the run (`note` says why)."""
    model: str | None = None
    scored: int = 0
    """Answers read (canaries included)."""
    note: str | None = None
    unscored: dict[str, int] = Field(default_factory=dict)
    """Answers read in part or not at all, by why (an empty answer, one longer than the
    context, a chat template with no end-of-turn token, no reply)."""


class Placement(BaseModel):
    """Where a model's layers ran."""

    n_gpu_layers: int | None
    """Layers offloaded to the GPU at the last load; None: never loaded."""
    plan: str | None
    """Why (the planner's reason, retries after a failed load)."""
    n_parallel: int | None = None
    """Sequences decoded together at the last load (None: never loaded, or a run.json
    written before it was recorded). With the seed, the models and the llama.cpp build
    (`versions`), what a run's records depend on: the same values give the same records."""


class ResidencyBudget(BaseModel):
    """The memory budget for keeping several models loaded at once."""

    budget_bytes: int
    cost_bytes: dict[str, int]
    """Each model's estimated footprint (weights + KV cache + compute buffers)."""


class TokenCounts(BaseModel):
    """One model's tokens over the run."""

    prompt: int
    prompt_evaluated: int
    """Prompt tokens actually evaluated: the rest came from the reused prefix cache."""
    completion: int


class JudgeValidity(BaseModel):
    """How often one model's structured (JSON-grammar) replies were valid."""

    structured_calls: int
    valid: float
    """Share valid at all (first try or after the one repair retry), 4 decimals."""
    valid_first_try: float
    counted_failures: int
    """Calls invalid twice: the reply and its repair retry."""
    invalid_replies: dict[str, int]
    """Every invalid reply, first tries included, by reason."""


class PrefixCache(BaseModel):
    """Prompt-prefix reuse in one stage."""

    prompt_tokens: int
    prompt_evaluated: int
    reused: float | None
    """Share of prompt tokens not evaluated again; None when the stage had no prompt."""


class RolesShared(BaseModel):
    """Whether there were enough models for every candidate's roles to differ."""

    candidates: int
    """Candidates for which a model had to play two roles."""
    models_registered: int
    panel: int


class PeakRss(BaseModel):
    """Peak resident memory in MB; None where the platform cannot tell (Windows)."""

    main: float | None
    """The engine's own process."""
    workers: float | None
    """The largest finished model worker process."""


class Eta(BaseModel):
    """The time predicted from `models bench` figures against the time taken."""

    predicted_seconds: float | None
    actual_seconds: float
    """All sessions together."""


class Session(BaseModel):
    """One start of the run, up to its last run.json write. Every session written has all
    four fields; browsing needs only `started`, so the rest may be missing elsewhere."""

    started: str
    ended: str | None = None
    status: str | None = None
    """The run's status when this session last wrote run.json."""
    seconds: float = 0.0


class RunReport(BaseModel):
    """run.json. Sections in file order."""

    schema_version: int | None = None
    """SCHEMA_VERSION of the writer; None only in hand-made files."""
    status: str = "unknown"
    """running, complete, exhausted (attempt cap hit), interrupted or failed."""
    out_dir: str | None = None
    identity: RunIdentity | None = None
    config: RunConfig | None = None
    versions: Versions | None = None
    models: dict[str, ModelRef] = Field(default_factory=dict)
    """Provenance of every registered model, by name: GGUF sha256 and quantization, or for an
    endpoint model its servers (credential-free), server kind and version, and model id."""
    seeds: SeedsInfo = Field(default_factory=SeedsInfo)
    counts: Counts = Field(default_factory=Counts)
    """Attempts and decisions over the whole run."""
    rounds: dict[str, Counts] = Field(default_factory=dict)
    """The same per round ("1", "2", …), with what each round added to the pool."""
    dedup: DedupOn | DedupOff | None = None
    """None: a schema-1 run, made before dedup existed."""
    calibration: CalibrationSection | None = None
    """None: a run made before calibration existed."""
    relevance: RelevanceSection | None = None
    """None: a run made before the relevance check existed."""
    likelihood: LikelihoodSection | None = None
    """None: a run made before likelihood evidence existed."""
    loads: dict[str, int] = Field(default_factory=dict)
    placement: dict[str, Placement] = Field(default_factory=dict)
    residency: ResidencyBudget | None = None
    """None: one model loaded at a time."""
    unloads: dict[str, int] = Field(default_factory=dict)
    worker_failures: dict[str, WorkerFailures] = Field(default_factory=dict)
    """Models whose worker died or missed a deadline (the others are not listed)."""
    tokens: dict[str, TokenCounts] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    """Seconds per stage, 3 decimals."""
    judge_validity: dict[str, JudgeValidity] = Field(default_factory=dict)
    """Models that made structured calls only."""
    parse_failures: dict[str, dict[str, int]] = Field(default_factory=dict)
    """Per model: counted failures by stage."""
    prefix_cache: dict[str, PrefixCache] = Field(default_factory=dict)
    roles_shared: RolesShared | None = None
    routing: Routing | None = None
    """Confidence routing's calls saved and added; None: routing off, or a run made
    before it existed."""
    peak_rss_mb: PeakRss | None = None
    eta: Eta | None = None
    sessions: list[Session] = Field(default_factory=list)
    stats: RunStats | None = None
    """The raw counters, which a resumed run continues from."""

    @property
    def seconds(self) -> float:
        """Time over every session."""
        return sum(s.seconds for s in self.sessions)

    @property
    def duplicates(self) -> int:
        return duplicates(self.counts)


def duplicates(counts: Counts) -> int:
    """Samples the panel accepted that dedup then dropped."""
    return counts.by_reason.get(Reason.DUPLICATE.value, 0)


class NotARunReport(OutputError):
    """A run.json that is not one: not a JSON object, or not of run.json's shape."""


class OtherSchema(OutputError):
    """A run.json whose schema_version this version does not read; callers add what to do."""

    def __init__(self, path: Path, version: object) -> None:
        self.version = version
        super().__init__(f"{path}: written by another version; schema_version {version!r}, "
                         f"this gra-local reads {max(READABLE_SCHEMAS)} and older")


class _Versioned(BaseModel):
    """The one field every schema shares, read before the rest is validated."""

    schema_version: Any = None


def read_report(path: Path, any_schema: bool = False) -> RunReport | None:
    """run.json at `path` as a RunReport; None when there is no such file. Raises
    OutputError when it is not JSON, OtherSchema when its schema is not one of
    READABLE_SCHEMAS (unless `any_schema`: browsing lists whatever it finds) and
    NotARunReport when it is not a run.json; every message is one line naming the file."""
    doc = read_json(path)
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise NotARunReport(f"{path}: not a gra-local run (not a JSON object)")
    version = _Versioned.model_validate(doc).schema_version
    if not any_schema and (isinstance(version, bool) or version not in READABLE_SCHEMAS):
        raise OtherSchema(path, version)
    try:
        return RunReport.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise NotARunReport(f"{path}: not a gra-local run.json ({where}: {first['msg']}"
                            f"{more})") from None
