"""Whether an endpoint model's servers answer now, for `models add --endpoint`, `models
list`, `doctor` and the Models screen.

Per server: one `GET {base}/models` (its round-trip time is the figure shown), then the
same detection a run does at connect time (kind, version, the model id it would serve).
Every server of every model is checked at once, each bounded by a short timeout, so a
dead host costs one timeout, not one per model. Nothing here runs for a GGUF model, and
`run_hosts` says which hosts a models file would make a run contact without contacting any.
The key is read from its variable for the check and never shown: every message is
credential-free (`public_url`, `redact`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from gra_local.backends.endpoint.capabilities import CAPABILITIES
from gra_local.backends.endpoint.config import (
    ApiKey,
    EndpointConfig,
    ServerKind,
    base_url,
    public_url,
    read_api_key,
    redact,
)
from gra_local.core.config import ModelSpec, Role
from gra_local.core.errors import ConfigError, GraError

State = Literal["up", "problem", "down", "unchecked"]
T = TypeVar("T")

CHECK_TIMEOUT_S = 3.0
"""`models list`, `doctor` and the Models screen: a server that does not answer in this
long is shown as unreachable."""
ADD_TIMEOUT_S = 10.0
"""`models add --endpoint`: the one check before registering."""
NO_CHECK_HINT = "pass --no-check to register it anyway"


@dataclass(frozen=True)
class ServerReach:
    """One server of an endpoint model, as a check found it."""

    endpoint: str
    """scheme://host:port/path, credential-free."""
    state: State
    """up: it answered and can serve the model; problem: it answered, but cannot serve it as
    configured (a refused key, a model it does not list, …); down: no answer; unchecked:
    not contacted (offline, or the key's variable is not set)."""
    kind: ServerKind | None = None
    version: str | None = None
    model: str | None = None
    """The model id it would serve."""
    listed: tuple[str, ...] = ()
    """Every model id it lists."""
    n_ctx: int | None = None
    rtt_ms: float | None = None
    """Round trip of `GET {base}/models`."""
    detail: str = ""
    """Why it is not up: one line, credential-free."""

    @property
    def host(self) -> str:
        return host_of(self.endpoint)

    def summary(self) -> str:
        """One line: "up 4 ms: llama.cpp server (b5432), model qwen2.5-7b", or why not."""
        if self.state == "unchecked":
            return f"not checked: {self.detail}"
        if self.state == "down":
            return f"unreachable: {self.detail}"
        rtt = f"{self.rtt_ms:.0f} ms" if self.rtt_ms is not None else "?"
        if self.state == "problem":
            return f"problem (answered in {rtt}): {self.detail}"
        label = CAPABILITIES[self.kind].label if self.kind else "server"
        version = f" ({self.version})" if self.version else ""
        others = [m for m in self.listed if m != self.model]
        also = (f"; also lists {', '.join(others[:5])}{', …' if len(others) > 5 else ''}"
                if others else "")
        return f"up {rtt}: {label}{version}, model {self.model}{also}"


@dataclass(frozen=True)
class EndpointReach:
    """Every server of one endpoint model."""

    name: str
    servers: tuple[ServerReach, ...]

    @property
    def up(self) -> list[ServerReach]:
        return [s for s in self.servers if s.state == "up"]

    @property
    def usable(self) -> bool:
        """A run could start on it now: a server is up, and those up serve one model."""
        return bool(self.up) and len({s.model for s in self.up}) == 1

    def summary(self) -> str:
        if all(s.state == "unchecked" for s in self.servers):
            return "not checked"
        served = sorted({s.model or "" for s in self.up})
        split = f"; its servers serve different models ({', '.join(served)})" if len(served) > 1 else ""
        return f"{len(self.up)} of {len(self.servers)} server(s) up{split}"


def host_of(url: str) -> str:
    """host:port of a URL (the port written out: 80/443 when it has none); "" if unparsable."""
    return urlsplit(public_url(url)).netloc


def run_hosts(specs: Sequence[ModelSpec]) -> list[str]:
    """Every host:port a run with these models would contact, in file order, once each;
    [] for GGUF models only. Contacts nothing."""
    return list(dict.fromkeys(h for spec in specs for url in spec.endpoints if (h := host_of(url))))


def config_of(spec: ModelSpec) -> EndpointConfig:
    """The EndpointConfig of an endpoint entry of models.toml; ConfigError naming the model
    and key when a URL or key name is unusable."""
    return EndpointConfig.from_spec(spec)


def check_specs(specs: Sequence[ModelSpec], timeout_s: float = CHECK_TIMEOUT_S,
                offline: bool = False) -> dict[str, EndpointReach]:
    """Each endpoint model's reach by name (GGUF models are skipped: nothing is contacted
    for them). `offline`: nothing is contacted at all, every server is "unchecked"."""
    reaches: dict[str, EndpointReach] = {}
    configs: list[EndpointConfig] = []
    for spec in specs:
        if not spec.is_endpoint:
            continue
        publics = tuple(public_url(url) for url in spec.endpoints)
        if offline:
            reaches[spec.name] = _all(spec.name, publics, "unchecked", "offline")
            continue
        try:
            configs.append(config_of(spec))
        except ConfigError as exc:
            reaches[spec.name] = _all(spec.name, publics, "problem", exc.message)
    for reach in check_endpoints(configs, timeout_s):
        reaches[reach.name] = reach
    return {spec.name: reaches[spec.name] for spec in specs if spec.name in reaches}


def _all(name: str, publics: tuple[str, ...], state: State, detail: str) -> EndpointReach:
    return EndpointReach(name, tuple(ServerReach(p, state, detail=detail) for p in publics))


def check_endpoints(configs: Sequence[EndpointConfig],
                    timeout_s: float = CHECK_TIMEOUT_S) -> list[EndpointReach]:
    """Check every server of every config at once; [] (and no socket) for no configs."""
    if not configs:
        return []
    return _run(_check_all(list(configs), timeout_s))


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, in a thread of its own when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _check_all(configs: list[EndpointConfig], timeout_s: float) -> list[EndpointReach]:
    jobs: list[Coroutine[Any, Any, ServerReach]] = []
    for config in configs:
        try:
            key = read_api_key(config)
        except ConfigError:
            detail = f"environment variable {config.api_key_env} (its api_key_env) is not set"
            jobs += [_unchecked(public_url(url), detail) for url in config.urls]
            continue
        jobs += [_check_one(config, url, key, timeout_s) for url in config.urls]
    found = iter(await asyncio.gather(*jobs))
    return [EndpointReach(c.name, tuple(next(found) for _ in c.urls)) for c in configs]


async def _unchecked(public: str, detail: str) -> ServerReach:
    return ServerReach(public, "unchecked", detail=detail)


async def _check_one(config: EndpointConfig, url: str, key: ApiKey | None,
                     timeout_s: float) -> ServerReach:
    import httpx

    from gra_local.backends.endpoint.detect import Unreachable, detect, list_models

    public = public_url(url)
    secrets = [key.reveal()] if key else []

    def said(exc: GraError) -> str:
        text = exc.message
        for prefix in (f"{public}: ", f"{public} "):  # shown next to the endpoint already
            text = text.removeprefix(prefix)
        return redact(text, secrets)

    headers = {"Authorization": f"Bearer {key.reveal()}"} if key else {}
    async with httpx.AsyncClient(headers=headers, trust_env=False,
                                 timeout=httpx.Timeout(timeout_s)) as client:
        started = time.monotonic()
        try:
            listed, _ = await asyncio.wait_for(list_models(client, url, public, key is not None),
                                               timeout_s)
        except Unreachable as exc:
            return ServerReach(public, "down", detail=said(exc))
        except TimeoutError:
            return ServerReach(public, "down", detail=f"no answer within {timeout_s:g} s")
        except GraError as exc:
            rtt = (time.monotonic() - started) * 1000
            return ServerReach(public, "problem", rtt_ms=rtt, detail=said(exc))
        rtt = (time.monotonic() - started) * 1000
        ids = tuple(entry.id for entry in listed)
        try:
            facts = await asyncio.wait_for(
                detect(client, url, public, config.server, config.model, key is not None),
                3 * timeout_s)
        except TimeoutError:
            return ServerReach(public, "problem", listed=ids, rtt_ms=rtt,
                               detail=f"its kind could not be told within {3 * timeout_s:g} s")
        except GraError as exc:
            return ServerReach(public, "problem", listed=ids, rtt_ms=rtt, detail=said(exc))
    return ServerReach(public, "up", facts.kind, facts.version, facts.model, ids, facts.n_ctx, rtt)


def endpoint_flag(url: str) -> str:
    """An --endpoint value as stored: its base URL ("/v1" added to a bare host); a
    ConfigError naming the flag, the URL shown without credentials."""
    try:
        return base_url(url)
    except ValueError as exc:
        raise ConfigError(f"--endpoint {exc}") from None


def register_endpoint(urls: Sequence[str], *, model: str | None = None,
                      api_key_env: str | None = None, server: ServerKind | None = None,
                      max_in_flight: int | None = None, name: str | None = None,
                      roles: list[Role] | None = None, check: bool = True,
                      timeout_s: float = ADD_TIMEOUT_S, hint: str = NO_CHECK_HINT,
                      ) -> tuple[ModelSpec, Path, EndpointReach | None]:
    """Register an endpoint model in the user registry. Every value is checked first; then,
    with `check`, every server is contacted once: each must answer and serve one model,
    whose id becomes `model` when none is given (and the name's default). Returns (spec,
    registry path, the check's reach or None)."""
    from gra_local.models.registry import add_endpoint_model

    if not urls:
        raise ConfigError("--endpoint: give the server's base URL, e.g. http://gpu-box:8080/v1")
    bases = list(dict.fromkeys(endpoint_flag(url) for url in urls))
    reaches: list[EndpointReach] = []

    def learn() -> str:
        config = EndpointConfig.checked(name=name or "new", urls=tuple(bases), model=model,
                                        api_key_env=api_key_env, server=server,
                                        max_in_flight=max_in_flight or 4)
        (reach,) = check_endpoints([config], timeout_s)
        reaches.append(reach)
        for found in reach.servers:
            if found.state != "up":
                raise ConfigError(f"{found.endpoint}: {found.summary()}; {hint}")
        served = sorted({found.model or "" for found in reach.servers})
        if len(served) > 1:
            raise ConfigError(f"the servers serve different models ({', '.join(served)}): "
                              "name one with --model")
        return served[0]

    spec, path = add_endpoint_model(bases, model=model, api_key_env=api_key_env, server=server,
                                    max_in_flight=max_in_flight, name=name, roles=roles,
                                    learn_model=learn if check else None)
    return spec, path, reaches[0] if reaches else None
