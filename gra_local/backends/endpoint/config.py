"""What an endpoint model is (its typed, frozen config), how its URLs are shown without
credentials, how its key is read, and the knobs of retries, benching and deadlines.

A models.toml entry with `endpoint` (core.config.ModelSpec) becomes one through
`EndpointConfig.from_spec`, which backends/routing.py hands to `connect()`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gra_local.core.config import ModelSpec
from gra_local.core.errors import ConfigError

ServerKind = Literal["llama.cpp", "vllm", "ollama", "lmstudio", "openai"]
SERVER_KINDS: tuple[ServerKind, ...] = ("llama.cpp", "vllm", "ollama", "lmstudio", "openai")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EndpointConfig(BaseModel):
    """One model served by one or more OpenAI-compatible servers."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(min_length=1, max_length=80)
    """The model's name in records and summaries (like a GGUF model's `name`)."""
    urls: tuple[str, ...] = Field(min_length=1)
    """OpenAI-compatible base URLs, e.g. "http://gpu-box:8080/v1" ("/v1" is added to a URL
    with no path); several spread the calls, least outstanding requests first."""
    model: str | None = None
    """The server's model id; default: the only one the server lists."""
    api_key_env: str | None = None
    """Name of the environment variable holding the key, read at connect time and sent as
    `Authorization: Bearer`; never written anywhere."""
    server: ServerKind | None = None
    """llama.cpp | vllm | ollama | lmstudio | openai; default: detected at connect time."""
    max_in_flight: int = Field(4, ge=1, le=256)
    """Requests in flight at once to each server (the server's own batching does the work)."""

    @field_validator("urls", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("urls")
    @classmethod
    def _base_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(base_url(url) for url in urls)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @classmethod
    def checked(cls, **fields: object) -> EndpointConfig:
        """The config, or a ConfigError naming the model and the first bad key (one line,
    never a credential: URLs are shown by `public_url`)."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(part) for part in first["loc"]) or "?"
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"endpoint model {fields.get('name')!r}: key {key!r}: {message}") from None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> EndpointConfig:
        """The endpoint model of a models.toml entry; ConfigError (naming the model and the
        key, never a credential) when a value is refused, or when the entry is a GGUF model."""
        if not spec.is_endpoint:
            raise ConfigError(f"model {spec.name!r}: not an endpoint model (it has a path)")
        try:
            return cls.checked(name=spec.name, urls=tuple(spec.endpoints), model=spec.model,
                               api_key_env=spec.api_key_env, server=spec.server,
                               max_in_flight=spec.max_in_flight)
        except ConfigError as exc:  # in the models file's words: `urls` is its `endpoint`
            raise ConfigError(exc.message.replace("key 'urls", "key 'endpoint", 1)) from None


def base_url(url: str) -> str:
    """The URL as requests use it: http(s), a host, no credentials, query or fragment, no
    trailing "/", and "/v1" when it has no path. A refused URL is shown without its
    credentials (`public_url`)."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{public_url(text)}: not a URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{public_url(text)}: only http:// and https:// URLs are served")
    if not parts.hostname:
        raise ValueError(f"{public_url(text)}: no host")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{public_url(text)}: a base URL takes no credentials, query or "
                         "fragment (name the environment variable holding a key in api_key_env)")
    del port  # read only to refuse a bad one
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/') or '/v1'}"


def public_url(url: str) -> str:
    """scheme://host:port/path of a URL: no userinfo, query or fragment, the port written
    out. What records, errors and logs name; never a credential."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}:{port}{parts.path.rstrip('/')}"


class ApiKey:
    """A key read from the environment. Its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "ApiKey(***)"

    __str__ = __repr__


def read_api_key(config: EndpointConfig) -> ApiKey | None:
    """The key named by `api_key_env`, read now; a missing or empty variable is an error
    naming the variable, never its value."""
    if config.api_key_env is None:
        return None
    value = os.environ.get(config.api_key_env, "")
    if not value.strip():
        raise ConfigError(f"endpoint model {config.name!r}: environment variable "
                          f"{config.api_key_env} (its api_key_env) is not set")
    return ApiKey(value.strip())


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret (a key, a URL's userinfo) replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Tuning:
    """Retries, benching and deadlines. The defaults suit a server on a LAN; tests shrink
    the waits."""

    retries: int = 3
    """Retries of one request after a fault (connection refused/reset, timeout, 5xx, 429,
    malformed body); then its result is finish_reason "error"."""
    backoff_base_s: float = 0.5
    """Full-jitter backoff: retry n waits uniform(0, min(cap, base·2ⁿ))."""
    backoff_cap_s: float = 10.0
    bench_base_s: float = 2.0
    """A server that keeps failing is benched base·2^(k-1) s after its k-th straight bench."""
    bench_cap_s: float = 60.0
    bench_after: int = 2
    """Straight faults of a server (no success between) that bench it; a refused
    connection benches at once."""
    retry_after_cap_s: float = 120.0
    """Longest `Retry-After` honoured; a server asking for more is benched that long."""
    min_deadline_s: float = 30.0
    """A call's deadline: max(this, deadline_factor × max_tokens ÷ the server's measured
    tokens/s); `assumed_tok_s` until a call has completed there."""
    deadline_factor: float = 4.0
    assumed_tok_s: float = 8.0
    connect_timeout_s: float = 10.0
    probe_timeout_s: float = 10.0
    """Timeout of each detection request at connect time."""
    lost_after_calls: int = 1
    """Straight `chat_many` calls in which a request got no reply and every server is down
    (benched for connection faults, timeouts, 5xx or garbage; a 429 is not down): at this
    many, the session raises WorkerLost, so an outage's failed requests are asked again by
    the engine rather than recorded as the model's failures."""
