"""The app's backend: a run started from the app routes GGUF models to llama.cpp workers and
endpoint models to their servers, as `gra-local run` does."""

from __future__ import annotations

from pathlib import Path

from gra_local.backends.llama.process import LlamaProcessBackend
from gra_local.backends.routing import RoutingBackend
from gra_local.tui.services import Services
from gra_local.tui.settings import Settings


def test_the_apps_backend_routes_gguf_and_endpoint_models(tmp_path: Path) -> None:
    backend = Services(settings=Settings(spare_core=True)).backend(tmp_path / "logs")
    assert isinstance(backend, RoutingBackend)
    assert isinstance(backend.local, LlamaProcessBackend)
    assert backend.local.log_dir == tmp_path / "logs" and backend.local.spare_cores == 1
