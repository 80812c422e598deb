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


def test_the_demo_notice_is_for_the_embedded_model_alone() -> None:
    from gra_local.core.config import ModelSpec, Registry
    from gra_local.tui.services import DEMO_NOTICE, demo_notice

    embedded = ModelSpec(name="smollm2-135m", path="default")
    own = ModelSpec(name="qwen", path="/models/qwen.gguf")
    assert demo_notice(Registry(models=[embedded])) == DEMO_NOTICE
    assert demo_notice(Registry(models=[embedded, own])) is None
    assert demo_notice(Registry(models=[])) is None
