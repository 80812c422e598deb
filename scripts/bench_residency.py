#!/usr/bin/env python3
"""Benchmark: keeping several models resident vs one model at a time.

Three registered models (copies of the embedded SmolLM2-135M under different names, so
roles are drawn among three models as in a real panel) run the same batch of samples
twice through the real pipeline (llama.cpp worker processes): once with a memory budget
that holds all three, once forcing one model at a time. Prints loads and wall time of
each; the last line is `loads_ratio=<with/without>`.

Semantic dedup is off (dedup_threshold None, said on the first line printed): it runs on
the embedding model, not on the three models whose loads are counted, and would only add
the same embedder work to both runs (and need the embedder fetched).

Config, cache and data dirs are private temporary ones (benchlib.private_user_dirs): the
user's settings, registry and caches stay as they were; models are only read.

Run on an otherwise idle machine: `python scripts/bench_residency.py [--samples 4]`.
`--quick` (CI, well under a minute) runs 2 candidates and a seed pool of 2 on one thread,
on the tiny test GGUF (tests/ggufs.py) instead of the embedded model unless --model names
one: the loads counted depend on the stages and role draws, not on the model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from gra_local.backends.llama.process import LlamaProcessBackend
from gra_local.core import paths
from gra_local.core.config import ModelSpec, Registry
from gra_local.core.engine.model_pool import Residency
from gra_local.core.engine.request import RunRequest
from gra_local.core.engine.scheduler import Run
from gra_local.core.options import RunOptions
from gra_local.models.embedded import default_model_path
from gra_local.models.resolve import model_ref

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below
import benchlib  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "gra_local" / "data" / "example_seeds.jsonl"
NAMES = ("smol-a", "smol-b", "smol-c")


def one_run(work: Path, model: Path, residency: Residency | None, samples: int, cache: Path,
            seed_pool: int = 6, n_threads: int | None = None) -> dict:
    registry = Registry(models=[ModelSpec(name=n, path=str(model), n_ctx=2048, n_threads=n_threads)
                                for n in NAMES])
    refs = {m.name: model_ref(m) for m in registry.models}
    # Every candidate runs: a fixed batch, samples set so high that no early stop happens.
    # Dedup off: residency is about the three models; the embedder is none of them.
    options = RunOptions(samples=10_000, max_attempts=samples, batch=samples, seed_pool=seed_pool,
                         dedup_threshold=None)
    req = RunRequest(seeds=SEEDS, out_dir=work, options=options, registry=registry, refs=refs,
                     models_source="bench", cache_dir=cache, residency=residency)
    start = time.perf_counter()
    result = Run(req, LlamaProcessBackend(log_dir=work / "logs")).execute()
    wall = time.perf_counter() - start
    if result.status == "failed" or not (work / "run.json").is_file():
        raise RuntimeError(f"the run in {work} ended {result.status}")
    data = json.loads((work / "run.json").read_text())  # the file's format, not the model's
    return {"wall": wall, "loads": sum(data["loads"].values()), "per_model": data["loads"],
            "load_seconds": sum(m["load_seconds"] for m in data["stats"]["models"].values()),
            "decided": data["counts"]["accepted"] + data["counts"]["rejected"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4, help="candidates in the batch (default 4)")
    ap.add_argument("--model", type=Path, help="GGUF to copy (default: the embedded model)")
    args = benchlib.parse_args(ap, {"samples": 2}, "2 candidates, a seed pool of 2, one "
                               "thread, the tiny test GGUF unless --model")
    benchlib.private_user_dirs()
    seed_pool, n_threads = 6, None
    if args.quick:  # one thread: llama.cpp's spinning threads crawl on a shared CI machine
        seed_pool, n_threads = 2, 1
    with tempfile.TemporaryDirectory(prefix="gra-bench-res-") as tmp:
        root = Path(tmp)
        model = args.model
        if model is None and args.quick:
            sys.path.insert(0, str(REPO / "tests"))
            from ggufs import write_tiny_gguf

            model = write_tiny_gguf(root / "tiny.gguf")
        model = model or default_model_path(paths.data_dir())
        if not model.is_file():
            print(f"no model at {model}: run `gra-local models pull-default`", file=sys.stderr)
            return 2
        print(f"semantic dedup off (the embedder is not one of the models counted); "
              f"{'quick mode' if args.quick else 'full mode'}")
        size = model.stat().st_size
        roomy = Residency(budget_bytes=3 * 2 * size, cost_bytes=dict.fromkeys(NAMES, 2 * size))
        results = {}
        for label, residency in (("resident", roomy), ("one-at-a-time", None)):
            # Each run annotates its own seeds (own cache), so both do the same work.
            try:
                results[label] = one_run(root / label, model, residency, args.samples,
                                         root / f"{label}-cache", seed_pool, n_threads)
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                return 1
            shutil.rmtree(root / label / "logs", ignore_errors=True)
    print(f"model {model.name} ×3 names, {args.samples} candidates, stage by stage")
    print(f"{'mode':16} {'loads':>5} {'load s':>7} {'wall s':>7} decided  per model")
    for label, r in results.items():
        print(f"{label:16} {r['loads']:5d} {r['load_seconds']:7.2f} {r['wall']:7.1f} {r['decided']:7d}  {r['per_model']}")
    ratio = results["resident"]["loads"] / results["one-at-a-time"]["loads"]
    print(f"loads_ratio={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
