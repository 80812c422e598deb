"""The backend a run uses: GGUF models load through the local backend (llama.cpp worker
processes), endpoint models connect to their OpenAI-compatible servers. One run mixes both."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gra_local.core.backend import Backend, Session
from gra_local.core.config import ModelSpec
from gra_local.core.records import ModelRef

if TYPE_CHECKING:  # the endpoint package (httpx) is imported once a spec needs it
    from gra_local.backends.endpoint.config import Tuning


class RoutingBackend:
    """`load(spec)`: `local.load(spec)` for a GGUF model, `connect()` for an endpoint model
    (its servers detected again, the key read from its variable now)."""

    def __init__(self, local: Backend, tuning: Tuning | None = None) -> None:
        self.local = local
        self.tuning = tuning
        """Retries, benching and deadlines of endpoint sessions (None: the defaults)."""

    def load(self, spec: ModelSpec) -> Session:
        if not spec.is_endpoint:
            return self.local.load(spec)
        from gra_local.backends.endpoint import EndpointConfig, connect

        return connect(EndpointConfig.from_spec(spec), self.tuning)


def endpoint_ref(spec: ModelSpec, tuning: Tuning | None = None) -> tuple[ModelRef, int]:
    """Connect to an endpoint model's servers once, as the run will: its provenance (the
    servers credential-free, their kind and version, the model id served) and the context
    the servers report (0: none reported). ModelError, one line naming the endpoint, when
    no server can serve it; ConfigError when its key's variable is not set."""
    from gra_local.backends.endpoint import EndpointConfig, connect

    session = connect(EndpointConfig.from_spec(spec), tuning)
    try:
        info = session.info
        details = info.details
        ref = ModelRef(name=spec.name, endpoint=session.provenance(),
                       server=_text(details.get("server_kind")),
                       server_version=_text(details.get("server_version")),
                       served_model=_text(details.get("model_id")))
        return ref, info.n_ctx
    finally:
        session.close()


def _text(value: object) -> str | None:
    return None if value is None else str(value)
