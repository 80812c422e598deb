"""Lost workers (issues 12 and 21) with the scripted backend: a model whose worker dies or
misses its deadline gets a fresh worker and its calls are asked again (a fault is never a
verdict); after MAX_WORKER_LOSSES it is dropped, the samples waiting on it are left
undecided and the run goes on with the other models, then ends interrupted so that a
rerun finishes them. The pool alone decides what a failed (re)load means and why a model
was dropped. (The real worker's
deadlines and crashes are tested in tests/backends/llama/test_llama_process_faults.py.)"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS
from fakes import Call, FakeBackend, FakeSession

from gra_local.core.config import ModelSpec, Registry
from gra_local.core.engine.model_pool import MAX_WORKER_LOSSES, ModelPool
from gra_local.core.engine.request import RunRequest
from gra_local.core.engine.scheduler import Run
from gra_local.core.errors import EndpointDown, ModelDown, ModelError, WorkerLost
from gra_local.core.events import Notice
from gra_local.core.options import RunOptions
from gra_local.core.records import ModelRef
from gra_local.core.stats import RunStats


def run(out: Path, names: list[str], backend: FakeBackend, **opts):
    events: list[object] = []
    return run_into(out, names, backend, events, **opts), events


def run_into(out: Path, names: list[str], backend: FakeBackend, events: list[object], **opts):
    registry = Registry(models=[ModelSpec(name=n, path=f"/models/{n}.gguf") for n in names])
    refs = {n: ModelRef(name=n, sha256="0" * 64, quantization="Q4_K_M") for n in names}
    options = RunOptions(**({"samples": 4, "seed_pool": 8, "dedup_threshold": None, "canaries": 0} | opts))
    req = RunRequest(seeds=EXAMPLE_SEEDS, out_dir=out, options=options, registry=registry,
                     refs=refs, models_source="test", cache_dir=out.parent / f"{out.name}-cache")
    return Run(req, backend, events.append, stop=backend.stop).execute()


def ids(out: Path) -> list[str]:
    return [orjson.loads(line)["id"] for name in ("accepted.jsonl", "rejected.jsonl")
            if (out / name).exists() for line in (out / name).read_bytes().splitlines()]


def records(out: Path) -> dict[str, tuple[str, str]]:
    return {r["id"]: (r["decision"], r["reason"]) for name in ("accepted.jsonl", "rejected.jsonl")
            if (out / name).exists()
            for r in map(orjson.loads, (out / name).read_bytes().splitlines())}


def test_a_lost_worker_is_restarted_and_its_calls_asked_again(tmp_path: Path) -> None:
    lost = []

    def script(call: Call):
        if call.role == "review_b" and call.model == "b" and not lost:
            lost.append(call)
            raise WorkerLost("model 'b': gave no sign of life for 61 s; worker killed")
        return None

    baseline, _ = run(tmp_path / "base", ["a", "b", "c", "d"], FakeBackend(), samples=4, batch=4)
    backend = FakeBackend(script)
    result, events = run(tmp_path / "out", ["a", "b", "c", "d"], backend, samples=4, batch=4)
    assert result.status == "complete" and len(lost) == 1
    # the lost worker was replaced by a fresh one at once (one load more than without the loss)
    assert backend.loads.count("b") == baseline.run_json.loads["b"] + 1
    report = result.run_json
    assert report.worker_failures["b"].losses == 1 and report.worker_failures["b"].dropped is None
    assert set(report.worker_failures) == {"b"}
    # a fault is never a verdict: no call counted as a failed reply, every decision as without it
    assert report.stats.models["b"].invalid_replies == {}
    assert records(tmp_path / "out") == records(tmp_path / "base")
    notes = [e.message for e in events if isinstance(e, Notice)]
    assert any("gave no sign of life" in n and "asked again of a fresh worker" in n for n in notes)
    assert sorted(ids(tmp_path / "out")) == [f"r1-{n:06d}" for n in range(1, 5)]


def test_a_dropped_model_leaves_its_samples_for_a_rerun(tmp_path: Path) -> None:
    """b's worker dies on every review: dropped after MAX_WORKER_LOSSES. The samples waiting
    on it are neither accepted nor rejected; later batches do without b; the run ends
    interrupted naming b, and a rerun (b healthy again) finishes them, every id once."""
    def script(call: Call):
        if call.model == "b" and call.role in ("review_a", "review_b"):
            raise WorkerLost("model 'b': worker process died while running (killed by SIGSEGV)")
        return None

    out = tmp_path / "out"
    with pytest.raises(ModelDown, match=r"samples were left undecided: model 'b' was dropped "
                                        r"\(3 worker failures; the last: .*SIGSEGV"):
        run(out, ["a", "b", "c", "d", "e"], FakeBackend(script), samples=9, batch=3, max_attempts=9)
    report = orjson.loads((out / "run.json").read_bytes())
    assert report["status"] == "interrupted"
    assert report["worker_failures"]["b"]["losses"] == MAX_WORKER_LOSSES
    assert "SIGSEGV" in report["worker_failures"]["b"]["dropped"]
    written = [orjson.loads(line) for name in ("accepted.jsonl", "rejected.jsonl")
               for line in (out / name).read_bytes().splitlines()]
    assert written and not any("no reply" in r["reason_detail"] for r in written)
    assert not any("b" in r["reviewers"] for r in written)  # b's samples wait for the rerun
    later = [r for r in written if r["attempt"] > 6]
    assert later
    for rec in later:
        assert "b" not in {rec["generator"], *rec["reviewers"], *(m["name"] for m in rec["models"])}
    resumed, _ = run(out, ["a", "b", "c", "d", "e"], FakeBackend(), samples=9, batch=3, max_attempts=9)
    assert resumed.status == "complete"
    assert len(ids(out)) == len(set(ids(out))) == resumed.run_json.counts.attempts
    assert any("b" in r["reviewers"] for r in map(orjson.loads, (out / "accepted.jsonl").read_bytes().splitlines()))


def test_every_generator_dropped_ends_the_run_resumable(tmp_path: Path) -> None:
    def script(call: Call):
        if call.role == "draft":
            raise WorkerLost("model 'a': missed its deadline of 120 s; worker killed")
        return None

    out = tmp_path / "out"
    with pytest.raises(ModelDown, match="every model that can play the generator role was dropped "
                                        r"\(a: 3 worker failures; the last: model 'a': missed its"):
        run(out, ["a"], FakeBackend(script), samples=2, batch=1)
    report = orjson.loads((out / "run.json").read_bytes())
    assert report["status"] == "interrupted"
    assert report["worker_failures"]["a"]["losses"] == MAX_WORKER_LOSSES
    assert not (out / "rejected.jsonl").exists() or not (out / "rejected.jsonl").read_bytes()
    # a resume gives the dropped model another chance (here: it works now)
    resumed, _ = run(out, ["a"], FakeBackend(), samples=2, batch=1)
    assert resumed.status == "complete"
    assert resumed.run_json.worker_failures["a"].dropped is None
    assert len(ids(out)) == len(set(ids(out))) == resumed.run_json.counts.attempts


def test_pool_forgets_a_lost_session_and_counts_losses() -> None:
    backend = FakeBackend()
    names = ["a", "b"]
    registry = Registry(models=[ModelSpec(name=n, path=f"/models/{n}.gguf") for n in names])
    stats, events = RunStats(), []
    pool = ModelPool(backend, registry, stats, events.append)
    first = pool.session("a")
    for n in range(1, MAX_WORKER_LOSSES + 1):
        pool.lost("a", WorkerLost("model 'a': gone"))
        assert stats.models["a"].worker_losses == n
        assert pool.dropped("a") is (n == MAX_WORKER_LOSSES)
    assert first.closed and "a" not in pool.loaded
    assert pool.usable(names) == ["b"]


class LoadFails(FakeBackend):
    """Loading the models in `broken` fails, as a worker that cannot start does."""

    broken: set[str]

    def __init__(self, script=None, broken: tuple[str, ...] = ()) -> None:
        super().__init__(script)
        self.broken = set(broken)

    def load(self, spec: ModelSpec) -> FakeSession:
        if spec.name in self.broken:
            raise ModelError(f"model {spec.name!r}: llama.cpp could not load it (out of memory)")
        return super().load(spec)


def test_the_pool_decides_what_a_failed_load_means() -> None:
    registry = Registry(models=[ModelSpec(name="a", path="/models/a.gguf"),
                                ModelSpec(name="e", endpoint="http://judge-box:8080/v1")])
    backend = LoadFails(broken=("a", "e"))
    stats = RunStats()
    pool = ModelPool(backend, registry, stats, lambda event: None)
    # the first load: a model that cannot load is the user's to fix; an endpoint went down
    with pytest.raises(ModelError, match="out of memory"):
        pool.session("a")
    with pytest.raises(EndpointDown, match="endpoint model 'e' at http://judge-box:8080/v1"):
        pool.session("e")
    assert stats.models == {} and not pool.loaded  # nothing loaded, nothing counted
    # a reload after a lost worker: one more loss for the caller to count, for either kind
    for name in ("a", "e"):
        backend.broken.discard(name)
        pool.session(name)
        backend.broken.add(name)
        pool.lost(name, WorkerLost(f"model {name!r}: gone"))
        with pytest.raises(WorkerLost, match=f"reloading '{name}' failed: model '{name}': "
                                             "llama.cpp could not load it"):
            pool.session(name)
    # a resume (a fresh pool, the run's counters carried over) gives every model a first load
    resumed = ModelPool(backend, registry, stats, lambda event: None)
    assert stats.models["a"].worker_losses == 1
    with pytest.raises(ModelError, match="out of memory"):
        resumed.session("a")


def test_drop_reason_is_the_pools_and_run_json_shows_it(tmp_path: Path) -> None:
    """b loses its worker once and then cannot be loaded again: each failed reload is one
    more loss, b is dropped after MAX_WORKER_LOSSES, and run.json says why from the pool."""
    lost = []

    def script(call: Call):
        if call.role == "review_b" and call.model == "b" and not lost:
            lost.append(call)
            backend.broken.add("b")  # its next worker cannot start
            raise WorkerLost("model 'b': worker process died while running (killed by SIGKILL)")
        return None

    backend = LoadFails(script)
    events: list[object] = []
    result = run_into(tmp_path / "out", ["a", "b", "c", "d"], backend, events, samples=6,
                      batch=2).run_json
    assert result.status == "complete" and len(lost) == 1
    failures = result.worker_failures["b"]
    assert failures.losses == MAX_WORKER_LOSSES
    assert failures.dropped == (f"{MAX_WORKER_LOSSES} worker failures; the last: reloading 'b' "
                                "failed: model 'b': llama.cpp could not load it (out of memory)")
    assert "dropped" not in result.stats.models["b"].model_dump()  # one source: the pool
    # a run.json written before (its stats said `dropped` too) still resumes: the key is ignored
    old = RunStats.model_validate({"models": {"b": {"worker_losses": 3, "dropped": "3 worker failures"}}})
    assert old.models["b"].worker_losses == 3 and "dropped" not in old.models["b"].model_dump()
    notes = [e.message for e in events if isinstance(e, Notice)]
    assert any(n.startswith("reloading 'b' failed") and "fresh worker" in n for n in notes)
    assert any("model 'b' dropped for the rest of the run" in n for n in notes)
    # the sample b left stays in the journal, undecided: the run had its six without it
    assert any("1 samples were left undecided (model 'b' was dropped" in n and
               "has its samples without them" in n for n in notes)
    assert "r1-000002" not in ids(tmp_path / "out")
    assert len(ids(tmp_path / "out")) == len(set(ids(tmp_path / "out"))) == 6
