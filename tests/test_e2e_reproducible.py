"""Reruns reproduce (issue 21, item 3), on the real embedded SmolLM2-135M (real attention, so a
reused prompt prefix changes batched numerics): the same command with the same seed and
models gives the same records, seed pool included, whether the annotation cache is cold
(the seeds annotated first, in the same worker) or warm (no annotation call at all before
the generate stage). Every stage starts from an empty prompt cache
(`ChatRequest.fresh_cache`). (This replaced a test that ran the same command twice with a
cold cache each time: the warm rerun proves that and more.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS
from test_e2e import cli, models_file

pytestmark = pytest.mark.e2e

VOLATILE = {"created_at", "decided_at", "seconds", "first_token_seconds"}


def stable(value: object) -> object:
    """A record without its clock readings."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def records(out: Path) -> list[object]:
    return [stable(orjson.loads(line)) for name in ("accepted.jsonl", "rejected.jsonl",
                                                      "unverified.jsonl", "canaries.jsonl",
                                                      "pool.jsonl")
            if (out / name).exists() for line in (out / name).read_bytes().splitlines()]


def test_a_warm_annotation_cache_gives_the_same_records(tmp_path: Path, smol_model: Path) -> None:
    models = models_file(tmp_path, smol_model)
    env = {**os.environ, "GRA_LOCAL_CACHE_DIR": str(tmp_path / "cache")}  # cold for the first
    outs = []
    for name in ("cold", "warm"):
        out = tmp_path / name
        proc = subprocess.run(cli("run", EXAMPLE_SEEDS, "--out", out, "--models", models,
                                  "--samples", "1", "--max-attempts", "2", "--seed-pool", "4", "--canaries", "0",
                                  "--no-dedup", "--seed", "21", "--quiet"),
                              env=env, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    cold, warm = (orjson.loads((out / "run.json").read_bytes()) for out in outs)
    stages = cold["stats"]["stages"], warm["stats"]["stages"]
    annotated = [s["annotate"]["calls"] if "annotate" in s else 0 for s in stages]
    assert annotated[0] > annotated[1]  # the warm run found (most) annotations in the cache
    assert cold["placement"]["smol"]["n_parallel"] == warm["placement"]["smol"]["n_parallel"]
    first, second = records(outs[0]), records(outs[1])
    decided = [r for r in first if isinstance(r, dict) and "decision" in r]
    assert decided and len(first) > len(decided)  # candidates decided, and a pool
    assert first == second
