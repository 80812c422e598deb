"""What a server is, found at connect time: the model ids it lists (`GET {base}/models`),
its kind, version and context where it tells.

Kind, in this order (the first that answers wins): the listing's `owned_by` ("vllm",
"llamacpp") or a `Server: llama.cpp` header; llama-server's `GET /props`; Ollama's
`GET /api/version`; LM Studio's `GET /api/v0/models`; llama-cpp-python's FastAPI title in
`GET /openapi.json`; vLLM's `GET /version`; else a plain OpenAI-compatible server. The
probes go to the root (the base URL without "/v1"); an explicit `server` skips them but
still reads the version, which decides vLLM's grammar field.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from gra_local.backends.endpoint.config import ServerKind
from gra_local.backends.endpoint.faults import transport_fault
from gra_local.backends.endpoint.servers import ServerFacts
from gra_local.core.errors import ModelError


class Unreachable(ModelError):
    """The server could not be reached at all (as opposed to answering wrongly)."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Listed(_Lenient):
    id: str
    owned_by: str | None = None
    max_model_len: int | None = None


class _Listing(_Lenient):
    data: list[_Listed]


class _GenerationSettings(_Lenient):
    n_ctx: int | None = None


class _Props(_Lenient):
    build_info: str | None = None
    default_generation_settings: _GenerationSettings | None = None


class _Version(_Lenient):
    version: str


class _LmsModel(_Lenient):
    id: str
    publisher: str | None = None
    compatibility_type: str | None = None
    max_context_length: int | None = None


class _LmsListing(_Lenient):
    data: list[_LmsModel]


class _ApiInfo(_Lenient):
    title: str = ""
    version: str | None = None


class _OpenApi(_Lenient):
    info: _ApiInfo


def root_of(url: str) -> str:
    """The server's root: the base URL without its trailing "/v1"."""
    return url[: -len("/v1")] if url.endswith("/v1") else url


class _Prober:
    """GETs against one server, each made at most once; a probe that fails is absent."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.root = root_of(url)
        self._seen: dict[str, Any] = {}

    async def get(self, path: str) -> Any:
        if path not in self._seen:
            self._seen[path] = await self._get(path)
        return self._seen[path]

    async def _get(self, path: str) -> Any:
        try:
            reply = await self.client.get(self.root + path)
        except httpx.HTTPError:
            return None
        if reply.status_code != 200:
            return None
        try:
            return orjson.loads(reply.content)
        except orjson.JSONDecodeError:
            return None

    async def typed(self, path: str, model: type[_Lenient]) -> Any:
        data = await self.get(path)
        if data is None:
            return None
        try:
            return model.model_validate(data)
        except ValidationError:
            return None


async def list_models(client: httpx.AsyncClient, url: str, public: str,
                      has_key: bool) -> tuple[list[_Listed], str]:
    """The listing of `GET {url}/models` and the reply's Server header."""
    try:
        reply = await client.get(url + "/models")
    except httpx.HTTPError as exc:
        raise Unreachable(f"{public}: {transport_fault(exc).detail}") from None
    if reply.status_code in (401, 403):
        hint = "the key was refused" if has_key else "it wants a key: set api_key_env"
        raise ModelError(f"{public}: HTTP {reply.status_code} listing models ({hint})")
    if reply.status_code != 200:
        raise ModelError(f"{public}/models answered HTTP {reply.status_code}: "
                         "is this the OpenAI-compatible base URL (usually ending in /v1)?")
    try:
        listing = _Listing.model_validate(orjson.loads(reply.content))
    except (orjson.JSONDecodeError, ValidationError):
        raise ModelError(f"{public}/models is not an OpenAI model list: is this the "
                         "OpenAI-compatible base URL?") from None
    return listing.data, reply.headers.get("server", "")


def choose_model(listed: list[_Listed], wanted: str | None, public: str) -> _Listed:
    ids = [entry.id for entry in listed]
    shown = ", ".join(ids[:12]) + (f", … ({len(ids)} in all)" if len(ids) > 12 else "")
    if wanted is not None:
        for entry in listed:
            if entry.id == wanted:
                return entry
        raise ModelError(f"{public} does not serve model {wanted!r}; it lists: {shown or 'none'}")
    if len(listed) == 1:
        return listed[0]
    if not listed:
        raise ModelError(f"{public} lists no model")
    raise ModelError(f"{public} serves {len(ids)} models, so `model` must name one: {shown}")


async def detect(client: httpx.AsyncClient, url: str, public: str, explicit: ServerKind | None,
                 wanted: str | None, has_key: bool) -> ServerFacts:
    """The server's facts; ModelError (Unreachable when nothing answered) with one line
    naming the endpoint."""
    listed, server_header = await list_models(client, url, public, has_key)
    entry = choose_model(listed, wanted, public)
    probe = _Prober(client, url)
    kind = explicit or await _kind(probe, entry, server_header)
    version, n_ctx = await _version(probe, kind, entry.id)
    if entry.max_model_len:
        n_ctx = entry.max_model_len
    return ServerFacts(kind=kind, version=version, model=entry.id, n_ctx=n_ctx)


async def _kind(probe: _Prober, entry: _Listed, server_header: str) -> ServerKind:
    owner = (entry.owned_by or "").lower()
    if owner == "vllm":
        return "vllm"
    if owner == "llamacpp" or server_header.lower().startswith("llama.cpp"):
        return "llama.cpp"
    props = await probe.typed("/props", _Props)
    if props is not None and (props.build_info or props.default_generation_settings):
        return "llama.cpp"
    if await probe.typed("/api/version", _Version) is not None:
        return "ollama"
    lms = await probe.typed("/api/v0/models", _LmsListing)
    if lms is not None and any(m.compatibility_type or m.publisher for m in lms.data):
        return "lmstudio"
    api = await probe.typed("/openapi.json", _OpenApi)
    if api is not None and "llama.cpp" in api.info.title:
        return "llama.cpp"
    if await probe.typed("/version", _Version) is not None:
        return "vllm"
    return "openai"


async def _version(probe: _Prober, kind: ServerKind, model: str) -> tuple[str | None, int | None]:
    """(version, context length) where the server reports them."""
    if kind == "llama.cpp":
        props = await probe.typed("/props", _Props)
        if props is not None and (props.build_info or props.default_generation_settings):
            settings = props.default_generation_settings
            return props.build_info, settings.n_ctx if settings else None
        api = await probe.typed("/openapi.json", _OpenApi)
        if api is not None and "llama.cpp" in api.info.title and api.info.version:
            return f"llama-cpp-python {api.info.version}", None
        return None, None
    if kind == "vllm":
        found = await probe.typed("/version", _Version)
        return (found.version if found else None), None
    if kind == "ollama":
        found = await probe.typed("/api/version", _Version)
        return (found.version if found else None), None
    if kind == "lmstudio":
        lms = await probe.typed("/api/v0/models", _LmsListing)
        lengths = [m.max_context_length for m in lms.data
                   if m.id == model and m.max_context_length] if lms else []
        return None, (lengths[0] if lengths else None)
    return None, None
