"""Does a restructured engine behave exactly as before? Runs a fixed set of scripted runs
(the tests' scripted backend, replies varied per call seed: invalid output, too-long
prompts, lost workers, failed checks, spread scores with probabilities, off-topic answers)
and writes every output file, normalized, so that two trees can be compared byte for byte.

    python scripts/same_behaviour.py --out /tmp/before     # on the old tree
    python scripts/same_behaviour.py --out /tmp/after      # on the new tree
    python scripts/same_behaviour.py --compare /tmp/before /tmp/after

Compared: accepted, rejected, unverified, journal, canaries and pool .jsonl and run.json of
each scenario, after removing what a clock writes (timestamps, seconds, peak memory,
versions). Scenarios: generation under each calibration action (weight, flag, drop),
with and without routing, canaries, relevance and dedup, two rounds, a panel of one;
review-only mode; and each of those stopped after N calls and resumed (N varied).
`--real MODEL.gguf` adds one run on real llama.cpp with a pinned seed and n_parallel.
Runs on the trees before and after issue 19 (it finds either engine's entry points).
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fakes import TOO_LONG, Call, FakeBackend, HashEmbedder, certain, scores  # noqa: E402

from gra_local.core.config import ModelSpec, Registry  # noqa: E402
from gra_local.core.engine.request import RunRequest  # noqa: E402
from gra_local.core.options import RunOptions  # noqa: E402
from gra_local.core.records import ModelRef  # noqa: E402

FILES = ("accepted.jsonl", "rejected.jsonl", "unverified.jsonl", "journal.jsonl", "canaries.jsonl",
         "pool.jsonl")
CLOCK_KEYS = {"created_at", "decided_at", "seconds", "load_seconds", "plan", "gpu_plan", "timings", "sessions", "peak_rss_mb",
              "versions", "eta", "started", "finished", "started_at", "finished_at", "ended_at"}
SEEDS = REPO / "gra_local" / "data" / "example_seeds.jsonl"
TOPICS = ["hash maps", "prime numbers", "photosynthesis", "the French revolution",
          "sorting a list", "interest rates"]


def _h(call: Call, salt: str) -> int:
    return zlib.crc32(f"{call.request.seed}/{salt}".encode()) % 100


def script(call: Call) -> Any:
    """Replies that vary with the call's seed, so retries, replacements, vetoes, routing,
    adjudication and dedup all happen."""
    r = _h(call, call.role)
    if call.role == "draft":
        if r < 6:
            return "not json at all"
        topic = TOPICS[_h(call, "topic") % (3 if r < 60 else len(TOPICS))]
        return {"keywords": ["explain", "topic", f"v{r}"], "summary": "A task.",
                "instruction": f"Explain {topic} in two sentences (variant {r % 7})."}
    if call.role == "answer":
        if r < 4:
            return ("", "length")
        if r < 6:
            return ("", "error")
        if r < 8:
            return TOO_LONG
        text = str(call.request.messages[-1]["content"])
        topic = next((t for t in TOPICS if t in text), "numbers")
        if r > 88:
            topic = TOPICS[(TOPICS.index(topic) + 3) % len(TOPICS)] if topic in TOPICS else "rain"
        return f"Explain {topic} in two sentences: {topic} follow simple rules ({r})."
    if call.role == "review_a":
        if r < 7:
            return "{broken"
        if r < 9:
            return TOO_LONG if _h(call, "long") < 30 else ("", "error")
        if r < 25:
            return {"reasonable": "pass", "complete": "fail", "clear": "pass"}
        return {"reasonable": "pass", "complete": "pass", "clear": "pass"}
    if call.role == "review_b":
        if r < 8:
            return "{broken"
        value = 6 + _h(call, "score") % 5  # 6..10
        if r > 80:
            return scores(value) | {"clarity": max(0, value - 4)}
        return scores(value)
    if call.role == "adjudicate":
        if r < 15:
            return "{nope"
        return scores(6 + r % 5)
    return None


def probes(call: Call, text: str) -> list:
    return certain(text, spread=(_h(call, "spread") % 5) / 40)


def request(out: Path, names: list[str], seeds: Path, embedder: bool, **opts: Any) -> RunRequest:
    registry = Registry(models=[ModelSpec(name=n, path=f"/models/{n}.gguf") for n in names])
    refs = {n: ModelRef(name=n, sha256="0" * 64, quantization="Q4_K_M") for n in names}
    options = RunOptions(**({"samples": 6, "seed_pool": 12, "dedup_threshold": None} | opts))
    return RunRequest(seeds=seeds, out_dir=out, options=options, registry=registry, refs=refs,
                      models_source="same_behaviour", cache_dir=out.parent / f"{out.name}-cache",
                      embedder=HashEmbedder() if embedder else None)


def _runner(review: bool) -> Any:
    """The engine's run entry point, on either tree."""
    from gra_local.core.engine import scheduler

    if not review:
        return scheduler.Run
    review_only = __import__("gra_local.core.engine.review_only", fromlist=["x"])
    if hasattr(review_only, "ReviewRun"):  # before issue 19: a subclass of Run
        return review_only.ReviewRun
    return lambda req, backend, **kw: scheduler.Run(req, backend, source=review_only.ReviewSource(), **kw)


GEN = dict(names=["a", "b", "c", "d", "e"], review=False, embedder=True)
SCENARIOS: dict[str, dict[str, Any]] = {
    "gen_weight": GEN | dict(opts=dict(canaries=4, calibration="weight", rounds=2,
                                       dedup_threshold=0.85, max_attempts=20)),
    "gen_weight_norouting": GEN | dict(opts=dict(canaries=4, routing=False, max_attempts=16)),
    "gen_flag": GEN | dict(opts=dict(canaries=2, calibration="flag", max_attempts=16, delta=0.4)),
    "gen_drop": GEN | dict(opts=dict(canaries=4, calibration="drop", min_canary_accuracy=0.6,
                                     max_attempts=16, batch=5)),
    "gen_plain": GEN | dict(opts=dict(canaries=0, relevance=False, batch=5, max_attempts=15),
                            embedder=False),
    "gen_two_models": dict(names=["a", "b"], review=False, embedder=True,
                           opts=dict(canaries=4, max_attempts=14, samples=4)),
    "gen_panel_one": GEN | dict(opts=dict(canaries=4, panel=1, max_attempts=14)),
    "review_weight": dict(names=["a", "b", "c", "d"], review=True, embedder=True,
                          opts=dict(canaries=4, batch=6)),
    "review_flag": dict(names=["a", "b", "c"], review=True, embedder=False,
                        opts=dict(canaries=2, calibration="flag", relevance=False)),
}
RESUMED = {"gen_weight": (23, 170), "gen_flag": (60,), "review_weight": (41, 90),
           "gen_drop": (77,)}
"""Scenarios also run stopped after each of these numbers of calls, then resumed."""


def _pairs(path: Path) -> Path:
    """A review dataset: the example seeds, some answers swapped or cut."""
    rows = [orjson.loads(line) for line in SEEDS.read_bytes().splitlines() if line.strip()]
    out = []
    for i, row in enumerate(rows):
        row = dict(row)
        if i % 5 == 1:
            row["output"] = rows[(i + 7) % len(rows)]["output"]
        elif i % 5 == 3:
            row["output"] = row["output"][: len(row["output"]) // 3]
        out.append(row)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in out))
    return path


def _seeds(root: Path) -> Path:
    """The example seeds, where both trees read them from (run.json names the path)."""
    path = root / "seeds.jsonl"
    shutil.copyfile(SEEDS, path)
    return path


def run_scenario(name: str, root: Path, stops: tuple[int, ...] = ()) -> Path:
    spec = SCENARIOS[name]
    out = root / (name if not stops else f"{name}_stop{'_'.join(map(str, stops))}")
    for old in (out, out.parent / f"{out.name}-cache"):
        shutil.rmtree(old, ignore_errors=True)
    seeds = _pairs(root / "pairs.jsonl") if spec["review"] else _seeds(root)
    runner = _runner(spec["review"])
    for stop in (*stops, None):
        backend = FakeBackend(script=script, probes=probes, stop_after=stop)
        req = request(out, spec["names"], seeds, spec["embedder"], **spec["opts"])
        runner(req, backend, stop=backend.stop).execute()
    return out


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in CLOCK_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def normalize(run_dir: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        path = run_dir / name
        if path.exists():
            lines = [orjson.dumps(_strip(orjson.loads(line)), option=orjson.OPT_SORT_KEYS)
                     for line in path.read_bytes().splitlines() if line.strip()]
            (dest / name).write_bytes(b"".join(line + b"\n" for line in lines))
    report = orjson.loads((run_dir / "run.json").read_bytes())
    report = _strip(report)
    report.get("stats", {}).pop("stages", None)
    (dest / "run.json").write_bytes(orjson.dumps(report, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))


def run_real(model: Path, root: Path) -> Path:
    """One real run on llama.cpp: pinned seed, n_parallel 4, the example seeds."""
    from gra_local.backends.llama.process import LlamaProcessBackend

    out = root / "real"
    shutil.rmtree(out, ignore_errors=True)
    spec = ModelSpec(name="smol", path=str(model), n_ctx=4096, n_threads=2, n_parallel=4)
    registry = Registry(models=[spec])
    refs = {"smol": ModelRef(name="smol", sha256="0" * 64, quantization="Q4_1")}
    options = RunOptions(samples=2, max_attempts=6, seed_pool=6, dedup_threshold=None,
                         relevance=False, canaries=2, seed=7)
    req = RunRequest(seeds=_seeds(root), out_dir=out, options=options, registry=registry, refs=refs,
                     models_source="same_behaviour", cache_dir=root / "real-cache")
    _runner(False)(req, LlamaProcessBackend(log_dir=root / "real-logs")).execute()
    return out


def compare(a: Path, b: Path) -> int:
    diffs = 0
    names = sorted({p.relative_to(a) for p in a.rglob("*") if p.is_file()}
                   | {p.relative_to(b) for p in b.rglob("*") if p.is_file()})
    for rel in names:
        left, right = a / rel, b / rel
        if not left.exists() or not right.exists():
            print(f"only in {'after' if not left.exists() else 'before'}: {rel}")
            diffs += 1
            continue
        if left.read_bytes() != right.read_bytes():
            diffs += 1
            print(f"DIFFERS: {rel}")
            lines = difflib.unified_diff(left.read_text().splitlines(), right.read_text().splitlines(),
                                         "before", "after", n=0, lineterm="")
            for line in list(lines)[:12]:
                print("   ", line[:300])
    print(f"{len(names)} files compared, {diffs} differ")
    return 1 if diffs else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="where to write the normalized outputs")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--only", nargs="*", help="scenario names (default: all)")
    ap.add_argument("--real", type=Path, metavar="GGUF", help="also one real llama.cpp run")
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        ap.error("--out or --compare")
    work = Path(tempfile.gettempdir()) / "gra-same-behaviour"  # the same paths on both trees
    work.mkdir(exist_ok=True)
    os.environ.setdefault("GRA_LOCAL_CACHE_DIR", str(work / "user-cache"))
    os.environ.setdefault("GRA_LOCAL_CONFIG_DIR", str(work / "user-config"))
    for name in args.only or list(SCENARIOS):
        normalize(run_scenario(name, work), args.out / name)
        for stop in RESUMED.get(name, ()):
            normalize(run_scenario(name, work, (stop,)), args.out / f"{name}_stop{stop}")
        print(f"{name}: done")
    if args.real is not None:
        normalize(run_real(args.real, work), args.out / "real")
        print("real: done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
