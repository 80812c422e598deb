"""The CLI progress lines (gra_local/commands/progress.py): a model loaded here says where it
runs on this machine; an endpoint model says which server it reached, never "CPU"."""

from __future__ import annotations

import io

from fakes import FakeBackend, FakeSession

from gra_local.commands.progress import ProgressView
from gra_local.core.backend import LoadInfo
from gra_local.core.config import ModelSpec, Registry, Role
from gra_local.core.engine.model_pool import ModelPool
from gra_local.core.events import Event, ModelLoaded
from gra_local.core.stats import RunStats

URL = "http://127.0.0.1:8080/v1"


def lines(*events: ModelLoaded) -> list[str]:
    out = io.StringIO()
    view = ProgressView(stream=out)  # not a terminal: plain lines
    for event in events:
        view.emit(event)
    view.close()
    return out.getvalue().splitlines()


def test_a_local_model_says_cpu_or_gpu() -> None:
    assert lines(ModelLoaded("smol", 0.412, 0), ModelLoaded("big", 1.5, 33)) == [
        "loaded smol in 0.41 s (CPU)", "loaded big in 1.50 s (GPU)"]


def test_an_endpoint_model_names_its_server() -> None:
    assert lines(ModelLoaded("remote-tiny", 0.1, 0, URL, "llama.cpp"),
                 ModelLoaded("qwen", 0.25, 0, "http://a:8000/v1, http://b:8000/v1", "vllm"),
                 ModelLoaded("odd", 0.5, 0, URL, None)) == [
        f"remote-tiny: llama.cpp server at {URL} (connected in 0.10 s)",
        "qwen: vLLM at http://a:8000/v1, http://b:8000/v1 (connected in 0.25 s)",
        f"odd: OpenAI-compatible server at {URL} (connected in 0.50 s)"]


class ServerSession(FakeSession):
    """What an endpoint session's LoadInfo holds (backends/endpoint/session.py)."""

    def __init__(self, backend: FakeBackend, name: str) -> None:
        super().__init__(backend, name)
        self.info = LoadInfo(name=name, seconds=0.1, n_gpu_layers=0, n_ctx=2048, n_parallel=4,
                             details={"backend": "endpoint", "endpoint": URL,
                                      "server_kind": "llama.cpp", "server_version": None,
                                      "model_id": "tiny", "max_in_flight": 4})


class Servers(FakeBackend):
    def load(self, spec: ModelSpec) -> FakeSession:
        if spec.is_endpoint:
            self.loads.append(spec.name)
            return ServerSession(self, spec.name)
        return super().load(spec)


def test_the_pool_tells_the_view_where_each_model_runs() -> None:
    registry = Registry(models=[ModelSpec(name="smol", path="/models/smol.gguf"),
                                ModelSpec(name="remote-tiny", endpoint=URL, roles=[Role.REVIEWER])])
    events: list[Event] = []
    pool = ModelPool(Servers(), registry, RunStats(), events.append)
    pool.session("smol")
    pool.session("remote-tiny")
    loaded = [e for e in events if isinstance(e, ModelLoaded)]
    assert [(e.endpoint, e.server) for e in loaded] == [(None, None), (URL, "llama.cpp")]
    assert lines(*loaded) == ["loaded smol in 0.01 s (CPU)",
                              f"remote-tiny: llama.cpp server at {URL} (connected in 0.10 s)"]
