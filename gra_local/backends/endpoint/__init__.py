"""Models behind OpenAI-compatible servers (llama.cpp's llama-server, llama-cpp-python's
server, vLLM, Ollama, LM Studio, OpenAI): `connect(EndpointConfig(...))` gives a
`core.backend.Session`. Nothing is contacted before `connect`."""

from gra_local.backends.endpoint.config import EndpointConfig, ServerKind, Tuning
from gra_local.backends.endpoint.session import EndpointSession, connect

__all__ = ["EndpointConfig", "EndpointSession", "ServerKind", "Tuning", "connect"]
