"""The models.toml schema, validated with pydantic (run options: core.options).

Errors name the file, the model and the key, never a pydantic dump.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import tomllib
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from gra_local.core.errors import ConfigError

DEFAULT_MODEL_PATH = "default"  # models.toml `path` value meaning "the embedded default model"
MAX_PARALLEL = 64
"""Most sequences one model may decode together (ModelSpec.n_parallel)."""


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


LOCAL_ONLY_KEYS = ("sha256", "chat_format", "n_ctx", "n_gpu_layers", "n_parallel", "n_threads", "scorer")
"""models.toml keys that only a GGUF model takes."""
ENDPOINT_ONLY_KEYS = ("model", "api_key_env", "server", "max_in_flight")
"""models.toml keys that only an endpoint model takes."""


class ModelSpec(BaseModel):
    """One `[[models]]` entry of models.toml."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")
    """Unique name used in records and summaries."""
    path: str | None = Field(None, min_length=1)
    """GGUF file path (relative paths resolve against the models.toml folder), or
    "default" for the embedded SmolLM2-135M fetched by `gra-local models pull-default`.
    Exactly one of `path` and `endpoint`."""
    endpoint: str | list[str] | None = None
    """OpenAI-compatible base URL(s) of a server that runs the model (llama-server, vLLM,
    Ollama, LM Studio, …), e.g. "http://gpu-box:8080/v1"; several spread the calls. Only
    contacted when a run or `doctor` uses this model. Exactly one of `path` and `endpoint`."""
    model: str | None = Field(None, min_length=1)
    """Endpoint models: the server's model id; default: the only one the server lists."""
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Endpoint models: the name of the environment variable holding the API key (read at
    run time, never written anywhere)."""
    server: Literal["llama.cpp", "vllm", "ollama", "lmstudio", "openai"] | None = None
    """Endpoint models: the server kind, which decides how structured output is asked for;
    default: detected at start."""
    max_in_flight: StrictInt = Field(4, ge=1, le=256)
    """Endpoint models: requests in flight at once to each server (its own batching does
    the work)."""
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    """Expected sha256 of the file; checked before the first load when given."""
    chat_format: str | None = None
    """llama-cpp-python chat format name (e.g. "chatml"); default: the GGUF's own template."""
    n_ctx: StrictInt | None = Field(None, ge=256, le=1_048_576)
    """Context window in tokens (a whole number: "4096" is refused, not read as one); default min(4096, the model's trained context). A value
    above the trained context is refused, never shrunk silently."""
    n_gpu_layers: StrictInt | Literal["auto"] = "auto"
    """Layers to offload: "auto" = all when llama.cpp has a GPU backend, else 0; -1 = all
    (a whole number or "auto": true is refused, not read as 1)."""
    n_parallel: int | Literal["auto"] = "auto"
    """Sequences decoded together in one context, sharing its KV cache: "auto" = chosen
    from free memory and the prompt lengths (see models/parallel.py); 1 = one at a time
    like before; at most 64. A value whose KV cache cannot fit is refused."""
    n_threads: StrictInt | None = Field(None, ge=1, le=512)
    """CPU threads, pinned; default: one core fewer than there are on small machines, and
    every core while nothing else uses the CPU (backends/llama/threads.py)."""
    scorer: bool = False
    """Score answers' likelihood with this model (a forward pass, no sampling); default:
    the smallest GGUF model. Endpoint models cannot: servers give no prompt log-probs."""
    roles: list[Role] = Field(default_factory=lambda: list(Role), min_length=1)
    """Roles this model may play: generator, reviewer, adjudicator, annotator."""
    sampling: dict[Role, Sampling] = Field(default_factory=dict)
    """Per-role sampler overrides, e.g. [models.sampling.generator] temperature = 0.7; the
    keys a table leaves out keep the role's defaults (DEFAULT_SAMPLING), not the class's."""

    @field_validator("sampling", mode="before")
    @classmethod
    def _merge_role_defaults(cls, value: object) -> object:
        """A partial table is laid over its role's defaults: setting only the generator's
        max_tokens must not drop its temperature from 0.8 to Sampling's 0.2."""
        if not isinstance(value, dict):
            return value
        merged: dict[object, object] = {}
        for key, table in value.items():
            role = next((r for r in Role if r.value == key or r is key), None)
            if role is not None and isinstance(table, dict):
                table = {**DEFAULT_SAMPLING[role].model_dump(), **table}
            merged[key] = table
        return merged

    @field_validator("n_parallel", mode="before")
    @classmethod
    def _parallel_strictly(cls, value: object) -> object:
        """"auto" or a whole number 1–64; no "4", 4.0 or true (one error, not one a type)."""
        if value == "auto" or (type(value) is int and 1 <= value <= MAX_PARALLEL):
            return value
        raise PydanticCustomError(
            "n_parallel", f'expected "auto" or a whole number from 1 to {MAX_PARALLEL}, got {{value}}',
            {"value": repr(value)})

    @field_validator("endpoint")
    @classmethod
    def _plain_urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        """http(s) URLs with a host and no credentials, query or fragment: the URLs are
        written into run.json as given, so a key must come from `api_key_env`."""
        urls = [value] if isinstance(value, str) else value or []
        for n, url in enumerate(urls, 1):
            which = f"URL {n} of {len(urls)}: " if len(urls) > 1 else ""
            try:
                parts = urlsplit(url.strip())
                parts.port  # noqa: B018 - raises on a bad port
            except ValueError:
                raise ValueError(f"{which}not a URL") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{which}expected an http:// or https:// URL with a host, "
                                 'e.g. "http://gpu-box:8080/v1"')
            if "@" in parts.netloc or parts.query or parts.fragment:
                raise ValueError(f"{which}a URL here takes no credentials, query or fragment "
                                 "(name the environment variable holding a key in api_key_env)")
        if isinstance(value, list) and not value:
            raise ValueError("give at least one URL")
        return value

    @model_validator(mode="after")
    def _file_or_server(self) -> ModelSpec:
        """A model is a GGUF file or a server, and each kind takes only its own keys (a key
        left at its default is no key: a dump read back validates)."""
        if (self.path is None) == (self.endpoint is None):
            raise ValueError("give exactly one of 'path' (a GGUF file) and 'endpoint' (a server URL)")
        fields = type(self).model_fields

        def given(keys: tuple[str, ...]) -> str:
            return ", ".join(repr(k) for k in keys if getattr(self, k) != fields[k].get_default())

        if self.endpoint is not None and given(LOCAL_ONLY_KEYS):
            raise ValueError(f"{given(LOCAL_ONLY_KEYS)} apply to GGUF models only, not to an "
                             "endpoint model (its server decides)")
        if self.endpoint is None and given(ENDPOINT_ONLY_KEYS):
            raise ValueError(f"{given(ENDPOINT_ONLY_KEYS)} apply to endpoint models only")
        return self

    def sampling_for(self, role: Role) -> Sampling:
        return self.sampling.get(role, DEFAULT_SAMPLING[role])

    @property
    def is_default(self) -> bool:
        return self.path == DEFAULT_MODEL_PATH

    @property
    def is_endpoint(self) -> bool:
        """Served by OpenAI-compatible server(s), not loaded from a GGUF file here."""
        return self.endpoint is not None

    @property
    def endpoints(self) -> list[str]:
        """The endpoint URLs as given ([] for a GGUF model)."""
        if self.endpoint is None:
            return []
        return [self.endpoint] if isinstance(self.endpoint, str) else list(self.endpoint)


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


def _describe(err: ErrorDetails, data: dict) -> str:
    loc = list(err["loc"])
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
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
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
        if spec.path is None or spec.is_default:
            continue  # an endpoint model has no file
        given = Path(spec.path).expanduser()
        spec.path = str(given if given.is_absolute() else (path.parent / given).resolve())
    return registry
