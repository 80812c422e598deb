"""Endpoint models in the pool (issue 13), with the scripted backend: they cost no local
memory and stay loaded beside local models; when their servers stay down until the model is
dropped, or are down when it is first needed, the run stops `interrupted` with one line naming
the endpoint, and the same command resumes it with nothing lost or repeated. (The real
server's faults are tested in tests/test_e2e_endpoint.py.)"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS
from fakes import Call, FakeBackend, FakeSession

from gra_local.core.config import ModelSpec, Registry, Role
from gra_local.core.engine.model_pool import MAX_WORKER_LOSSES, ModelPool, Residency
from gra_local.core.engine.request import RunRequest
from gra_local.core.engine.scheduler import Run
from gra_local.core.errors import EndpointDown, ModelError, WorkerLost
from gra_local.core.options import RunOptions
from gra_local.core.records import ModelRef
from gra_local.core.stats import RunStats

URL = "http://judge-box:8080/v1"


def registry() -> Registry:
    """Two local models that may play anything and an endpoint judge."""
    return Registry(models=[ModelSpec(name="a", path="/models/a.gguf"),
                            ModelSpec(name="b", path="/models/b.gguf"),
                            ModelSpec(name="e", endpoint=URL, roles=[Role.REVIEWER])])


def test_an_endpoint_model_costs_nothing_and_stays_loaded_beside_local_ones() -> None:
    backend = FakeBackend()
    # room for one local model at a time, by memory and by count
    residency = Residency(budget_bytes=100, cost_bytes={"a": 80, "b": 80}, max_models=1)
    pool = ModelPool(backend, registry(), RunStats(), lambda event: None, residency)
    pool.session("e")
    pool.session("a")
    assert pool.loaded == ["e", "a"]  # the endpoint takes no room
    pool.session("b")  # evicts the local model, never the endpoint
    assert pool.loaded == ["e", "b"]
    pool.session("e")
    assert backend.loads == ["e", "a", "b"]  # still the first session
    assert pool.stats.models["e"].n_gpu_layers is None  # no layers anywhere here
    # without a residency budget (one local model at a time) the endpoint stays too
    single = ModelPool(FakeBackend(), registry(), RunStats(), lambda event: None)
    for name in ("a", "e", "b"):
        single.session(name)
    assert single.loaded == ["e", "b"]


def test_a_dropped_endpoint_model_stops_the_pool_with_endpoint_down() -> None:
    pool = ModelPool(FakeBackend(), registry(), RunStats(), lambda event: None)
    pool.session("e")
    for _ in range(MAX_WORKER_LOSSES - 1):
        pool.lost("e", WorkerLost("e: every server of this endpoint model stayed unreachable"))
    with pytest.raises(EndpointDown) as down:
        pool.lost("e", WorkerLost("e: every server of this endpoint model stayed unreachable"))
    assert URL in down.value.message and "rerun the same command to resume" in down.value.message
    assert "\n" not in down.value.message
    # a local model keeps today's behaviour: dropped, no stop
    for _ in range(MAX_WORKER_LOSSES):
        pool.lost("a", WorkerLost("model 'a': gone"))
    assert pool.dropped("a")


def run(out: Path, backend: FakeBackend) -> Run:
    reg = registry()
    refs = {m.name: (ModelRef(name=m.name, endpoint=URL, server="llama.cpp", served_model="judge")
                     if m.is_endpoint else ModelRef(name=m.name, sha256="0" * 64, quantization="Q4_K_M"))
            for m in reg.models}
    options = RunOptions(samples=6, batch=2, panel=2, seed_pool=8, dedup_threshold=None,
                         judge="panel")
    req = RunRequest(seeds=EXAMPLE_SEEDS, out_dir=out, options=options, registry=reg, refs=refs,
                     models_source="test", cache_dir=out.parent / "cache")
    return Run(req, backend)


def ids(out: Path) -> list[str]:
    return [orjson.loads(line)["id"] for name in ("accepted.jsonl", "rejected.jsonl")
            if (out / name).exists() for line in (out / name).read_bytes().splitlines()]


def test_a_server_down_for_good_interrupts_the_run_and_a_rerun_resumes(tmp_path: Path) -> None:
    down = {"now": False}

    def script(call: Call):
        if call.model == "e" and call.role in ("review_a", "review_b"):
            if len([c for c in backend.calls if c.model == "e"]) > 4:
                down["now"] = True  # the server dies after a few replies...
            if down["now"]:
                raise WorkerLost("e: every server of this endpoint model stayed unreachable")
        return None

    class DownAfterDeath(FakeBackend):
        def load(self, spec: ModelSpec) -> FakeSession:
            if spec.name == "e" and down["now"]:  # ...and stays down
                raise ModelError(f"endpoint model 'e': {URL}: cannot connect")
            return super().load(spec)

    backend = DownAfterDeath(script)
    out = tmp_path / "out"
    with pytest.raises(EndpointDown, match=r"endpoint model 'e' at http://judge-box:8080/v1 .*rerun"):
        run(out, backend).execute()
    report = orjson.loads((out / "run.json").read_bytes())
    assert report["status"] == "interrupted"
    assert report["worker_failures"]["e"]["losses"] == MAX_WORKER_LOSSES
    assert report["models"]["e"]["endpoint"] == URL and report["models"]["e"]["sha256"] is None
    before = ids(out)
    down["now"] = False  # the server is back
    resumed = run(out, FakeBackend()).execute()
    assert resumed.status == "complete"
    after = ids(out)
    assert after[: len(before)] == before
    assert sorted(after) == [f"r1-{n:06d}" for n in range(1, resumed.run_json.counts.attempts + 1)]


def test_an_endpoint_down_when_first_needed_interrupts_the_run(tmp_path: Path) -> None:
    class Unreachable(FakeBackend):
        def load(self, spec: ModelSpec) -> FakeSession:
            if spec.name == "e":
                raise ModelError(f"endpoint model 'e': {URL}: cannot connect")
            return super().load(spec)

    out = tmp_path / "out"
    with pytest.raises(EndpointDown, match="cannot connect"):
        run(out, Unreachable()).execute()
    assert orjson.loads((out / "run.json").read_bytes())["status"] == "interrupted"
    assert run(out, FakeBackend()).execute().status == "complete"
    assert len(ids(out)) == len(set(ids(out)))
