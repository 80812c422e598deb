"""Annotation: domain, keyword triple and summary for each seed in the pool.

Results are cached per seed file (by content hash) and annotator model, so a rerun, or
another run on the same seeds, does not redo them.
"""

from __future__ import annotations

import hashlib
import random
import zlib
from collections.abc import Callable
from pathlib import Path

from gra_local.core import prompts
from gra_local.core.config import Role
from gra_local.core.engine.steps import ask_steps
from gra_local.core.engine.waves import StageContext, Steps, Task, run_tasks
from gra_local.core.errors import SeedError
from gra_local.core.events import Notice
from gra_local.core.records import DOMAINS, Annotation, ModelRef, Tokens
from gra_local.core.rundir.journal import JsonlAppender, read_jsonl
from gra_local.core.seeds.pool import PoolEntry
from gra_local.core.seeds.scan import Seed


def _cache_key(seed: Seed, ref: ModelRef) -> str:
    text = f"{prompts.PROMPT_VERSION}|{ref.name}|{ref.sha256}|{seed.instruction}|{seed.response}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class AnnotationCache:
    def __init__(self, cache_dir: Path, seeds_sha256: str) -> None:
        folder = cache_dir / "annotations"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{seeds_sha256[:24]}.jsonl"
        self.entries: dict[str, Annotation] = {}
        for row in read_jsonl(self.path):
            try:
                self.entries[row["key"]] = Annotation.model_validate(row["annotation"])
            except (KeyError, ValueError):
                continue  # a stale or foreign line costs one re-annotation, nothing more
        self._out = JsonlAppender(self.path, fsync=False)

    def put(self, key: str, annotation: Annotation) -> None:
        self.entries[key] = annotation
        self._out.append({"key": key, "annotation": annotation.model_dump()})

    def close(self) -> None:
        self._out.close()


def _entry(seed: Seed, ann: Annotation) -> PoolEntry:
    domain = seed.domain if seed.domain in DOMAINS else ann.domain
    return PoolEntry(source=f"seed line {seed.line}", round=0, instruction=seed.instruction,
                     domain=domain, keywords=ann.keywords, summary=ann.summary,
                     response=seed.response or "")


def annotate_seeds(ctx: StageContext, seeds: list[Seed], refs: dict[str, ModelRef],
                   cache: AnnotationCache) -> list[PoolEntry]:
    annotators = sorted(m.name for m in ctx.registry.with_role(Role.ANNOTATOR))
    results: dict[int, PoolEntry] = {}
    tasks: list[Task] = []
    for seed in seeds:
        if seed.domain and seed.keywords and seed.summary:
            ann = Annotation(domain=seed.domain, keywords=seed.keywords, summary=seed.summary)
            results[seed.index] = _entry(seed, ann)
            continue
        model = random.Random(f"{ctx.options.seed}/annotate/{seed.index}").choice(annotators)
        key = _cache_key(seed, refs[model])
        if key in cache.entries:
            results[seed.index] = _entry(seed, cache.entries[key])
        else:
            tasks.append(Task(model, _annotate_one(ctx, seed, model, key, cache, results)))
    run_tasks(ctx, "annotate", tasks)
    failed = len(seeds) - len(results)
    if failed:
        ctx.emit(Notice(f"{failed} of {len(seeds)} seeds got no valid annotation and are not used"))
    if not results:
        raise SeedError("no seed could be annotated: every annotator reply was invalid "
                        "(see parse failures in run.json); try a larger model as annotator")
    return [results[s.index] for s in seeds if s.index in results]


def _annotate_one(ctx: StageContext, seed: Seed, model: str, key: str, cache: AnnotationCache,
                  results: dict[int, PoolEntry]) -> Steps:
    ann, _ = yield from ask_steps(ctx, model, "annotate", Role.ANNOTATOR,
                                  prompts.annotate(seed.instruction, seed.response), Annotation,
                                  Tokens(), seed=seed.index)
    if ann is not None:
        cache.put(key, ann)
        results[seed.index] = _entry(seed, ann)


def annotate_kept(ctx: StageContext, records: list[dict], round_no: int,
                  write: Callable[[PoolEntry], None]) -> tuple[int, int]:
    """Post-processing step 4c: a random annotator model writes domain, keywords and
    summary for each kept sample of a round, which then joins the generator's pool.

    Each entry is handed to `write` as soon as it exists, so a killed run redoes only
    what was not written. A sample whose annotation stays invalid joins with the
    generator's own keywords and summary rather than being lost. Returns (annotated,
    fallbacks).
    """
    annotators = sorted(m.name for m in ctx.registry.with_role(Role.ANNOTATOR))
    counts = {"annotated": 0, "fallback": 0}

    def one(rec: dict, model: str) -> Steps:
        ann, _ = yield from ask_steps(
            ctx, model, "reannotate", Role.ANNOTATOR,
            prompts.annotate(rec["instruction"], rec["response"]), Annotation, Tokens(),
            seed=zlib.crc32(f"{ctx.options.seed}/reannotate/{rec['id']}".encode()))
        if ann is None:
            counts["fallback"] += 1
            entry = PoolEntry(source=rec["id"], round=round_no, instruction=rec["instruction"],
                              domain=rec["domain"], keywords=rec["keywords"],
                              summary=rec["summary"], response=rec["response"])
        else:
            counts["annotated"] += 1
            domain = ann.domain if ann.domain in DOMAINS else rec["domain"]
            entry = PoolEntry(source=rec["id"], round=round_no, instruction=rec["instruction"],
                              domain=domain, keywords=ann.keywords, summary=ann.summary,
                              response=rec["response"], annotator=model)
        write(entry)

    tasks: list[Task] = []
    for rec in records:
        model = random.Random(f"{ctx.options.seed}/reannotate/{rec['id']}").choice(annotators)
        tasks.append(Task(model, one(rec, model)))
    run_tasks(ctx, "reannotate", tasks)
    return counts["annotated"], counts["fallback"]
