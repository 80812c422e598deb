"""Annotation: domain, keyword triple and summary for each seed in the pool.

Results are cached per seed file (by content hash) and annotator model, so a rerun, or
another run on the same seeds, does not redo them. A seed whose annotation stayed invalid
is cached as such too: asked again in a smaller batch its reply could differ, and a warm
cache must give the pool a cold one gives (the same command, the same records).
"""

from __future__ import annotations

import hashlib
import random
import zlib
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ValidationError

from gra_local.core import prompts
from gra_local.core.config import Role
from gra_local.core.engine.calls import Answer, TooLong, ask, structured
from gra_local.core.engine.waves import StageContext, Steps, Task, run_tasks
from gra_local.core.errors import SeedError
from gra_local.core.events import Notice
from gra_local.core.records import DOMAINS, Annotation, ModelRef, Tokens
from gra_local.core.rundir import files
from gra_local.core.rundir.journal import JsonlAppender, jsonl_bytes, scan_jsonl
from gra_local.core.seeds.pool import PoolEntry
from gra_local.core.seeds.scan import Seed


def _cache_key(seed: Seed, ref: ModelRef) -> str:
    """A GGUF model is named by its sha256; an endpoint model, which has none, by the model
    id its server serves and where."""
    model = ref.sha256 if ref.endpoint is None else f"{ref.served_model}@{ref.endpoint}"
    text = f"{prompts.PROMPT_VERSION}|{ref.name}|{model}|{seed.instruction}|{seed.response}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class CachedAnnotation(BaseModel):
    """One line of the annotation cache."""

    key: str
    annotation: Annotation | None
    """None: the annotator's reply stayed invalid (the seed is not used)."""


class AnnotationCache:
    """Annotations per seed file and annotator, one line each, fsynced. A damaged file
    (bad or torn lines, another schema) is never fatal: its valid lines are kept, the file
    is rewritten with them, `warn` is told once, and what is missing is annotated again."""

    def __init__(self, cache_dir: Path, seeds_sha256: str,
                 warn: Callable[[str], None] = lambda text: None) -> None:
        folder = cache_dir / "annotations"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise files.write_error(folder, exc, "create") from None
        self.path = folder / f"{seeds_sha256[:24]}.jsonl"
        self.entries: dict[str, Annotation | None] = {}
        found = scan_jsonl(self.path)
        problems = list(found.problems)
        for line, row in found.rows:
            try:
                cached = CachedAnnotation.model_validate(row)
            except ValidationError:
                problems.append(f"line {line}: not a cached annotation")
                continue
            self.entries[cached.key] = cached.annotation
        if problems:
            more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
            warn(f"annotation cache {self.path}: damaged ({problems[0]}{more}); kept its "
                 f"{len(self.entries)} valid entries, the rest are annotated again")
            files.write_atomic(self.path, jsonl_bytes(
                CachedAnnotation(key=k, annotation=a).model_dump() for k, a in self.entries.items()))
        self._out = JsonlAppender(self.path)

    def put(self, key: str, annotation: Annotation | None) -> None:
        self.entries[key] = annotation
        self._out.append(CachedAnnotation(key=key, annotation=annotation).model_dump())

    def close(self) -> None:
        self._out.close()


def _entry(seed: Seed, ann: Annotation) -> PoolEntry:
    domain = seed.domain if seed.domain in DOMAINS else ann.domain
    return PoolEntry(source=f"seed line {seed.line}", round=0, instruction=seed.instruction,
                     domain=domain, keywords=ann.keywords, summary=ann.summary,
                     response=seed.response or "")


def annotate_seeds(ctx: StageContext, seeds: list[Seed], refs: dict[str, ModelRef],
                   cache: AnnotationCache, source: str = "seeds") -> list[PoolEntry]:
    """The seeds' pool entries, in seed order. A seed whose annotation prompt cannot fit its
    annotator's context is reported by `source` (the seed file) and line and skipped, as is
    one whose annotation stays invalid; SeedError when no seed is left."""
    annotators = sorted(m.name for m in ctx.registry.with_role(Role.ANNOTATOR))
    results: dict[int, PoolEntry] = {}
    long: dict[int, TooLong] = {}
    tasks: list[Task] = []
    for seed in seeds:
        if seed.domain and seed.keywords and seed.summary:
            ann = Annotation(domain=seed.domain, keywords=seed.keywords, summary=seed.summary)
            results[seed.index] = _entry(seed, ann)
            continue
        model = random.Random(f"{ctx.options.seed}/annotate/{seed.index}").choice(annotators)
        key = _cache_key(seed, refs[model])
        if key in cache.entries:
            if (cached := cache.entries[key]) is not None:
                results[seed.index] = _entry(seed, cached)
        else:
            tasks.append(Task(model, _annotate_one(ctx, seed, model, key, cache, results, long)))
    run_tasks(ctx, "annotate", tasks)
    _report_too_long(ctx, source, [(s, long[s.index]) for s in seeds if s.index in long])
    failed = len(seeds) - len(results) - len(long)
    if failed:
        ctx.emit(Notice(f"{failed} of {len(seeds)} seeds got no valid annotation and are not used"))
    if not results and long and not failed:
        first = min(long)
        raise SeedError(f"{source}: every seed is too long for its annotator's context (first: "
                        f"line {next(s.line for s in seeds if s.index == first)}, "
                        f"{_too_long_numbers(long[first])}); shorten the seeds or give the "
                        "annotator a larger n_ctx")
    if not results:
        raise SeedError("no seed could be annotated: every annotator reply was invalid "
                        "(see parse failures in run.json); try a larger model as annotator")
    return [results[s.index] for s in seeds if s.index in results]


MAX_TOO_LONG_NOTICES = 10


def _too_long_numbers(long: TooLong) -> str:
    return f"{long.prompt_tokens} prompt + {long.room} reply tokens of {long.n_ctx}"


def _report_too_long(ctx: StageContext, source: str, long: list[tuple[Seed, TooLong]]) -> None:
    for seed, why in long[:MAX_TOO_LONG_NOTICES]:
        ctx.emit(Notice(f"{source} line {seed.line}: too long for {why.model}'s context "
                        f"({_too_long_numbers(why)}); skipped"))
    if len(long) > MAX_TOO_LONG_NOTICES:
        ctx.emit(Notice(f"{source}: {len(long)} seeds too long for their annotator's context "
                        "in all; skipped"))


def _annotate_one(ctx: StageContext, seed: Seed, model: str, key: str, cache: AnnotationCache,
                  results: dict[int, PoolEntry], long: dict[int, TooLong]) -> Steps:
    ann: Answer[Annotation] = yield from ask(ctx, structured(
        model, "annotate", Role.ANNOTATOR,
        prompts.annotate(seed.instruction, seed.response, seed.index), Annotation, seed.index),
        Tokens())
    if ann.too_long is not None:  # never cached: a larger n_ctx later may fit it
        long[seed.index] = ann.too_long
        return
    cache.put(key, ann.value)  # an invalid one too (None): a rerun skips it as this run did
    if ann.value is not None:
        results[seed.index] = _entry(seed, ann.value)


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
        answer: Answer[Annotation] = yield from ask(ctx, structured(
            model, "reannotate", Role.ANNOTATOR,
            prompts.annotate(rec["instruction"], rec["response"], zlib.crc32(rec["id"].encode())),
            Annotation, zlib.crc32(f"{ctx.options.seed}/reannotate/{rec['id']}".encode())), Tokens())
        ann = answer.value
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
