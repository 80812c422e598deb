"""Where a run meets dedup: seeds and kept samples are the references, and every sample
the panel passes is checked against them, one at a time, highest μ first (step 4b).

A run without an embedder (dedup off) gets `NoDedup`, which keeps everything.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gra_local.core.quality.dedup import DedupIndex, Embedder
    from gra_local.core.seeds.pool import PoolEntry


@dataclass(frozen=True)
class DuplicateHit:
    duplicate_of: str
    similarity: float
    threshold: float
    method: str  # "embedding" or "minhash"


Passed = tuple[str, str, float]  # (id, instruction, μ)


class Gate(Protocol):
    def prime(self, seeds: list[PoolEntry], accepted: list[dict]) -> None: ...
    def sift(self, passed: list[Passed], max_kept: int) -> list[tuple[str, DuplicateHit | None]]:
        """Decide `passed` highest μ first until `max_kept` are kept: (id, None) for a
        keeper, (id, hit) for a duplicate. Ids after the last keeper get no answer."""
        ...
    def describe(self) -> dict: ...


class NoDedup:
    def prime(self, seeds: list[PoolEntry], accepted: list[dict]) -> None:
        pass

    def sift(self, passed: list[Passed], max_kept: int) -> list[tuple[str, DuplicateHit | None]]:
        ranked = sorted(passed, key=lambda p: -p[2])  # stable: given order on ties
        return [(item_id, None) for item_id, _, _ in ranked[:max(max_kept, 0)]]

    def describe(self) -> dict:
        return {"enabled": False}


class DedupGate:
    """Semantic dedup for one run; the index lives in memory and is rebuilt on resume from
    the pool and accepted.jsonl (embeddings come back from the on-disk cache)."""

    def __init__(self, embedder: Embedder, cache_dir: Path, threshold: float,
                 minhash: bool) -> None:
        from gra_local.core.quality.dedup import DedupIndex, EmbeddingCache

        self.embedder = embedder
        self.threshold = threshold
        self.cache = EmbeddingCache(cache_dir, embedder)
        self.index: DedupIndex = DedupIndex(embedder, self.cache, threshold=threshold,
                                            use_minhash=minhash)
        self.references = 0

    def prime(self, seeds: list[PoolEntry], accepted: list[dict]) -> None:
        ids = [e.source for e in seeds] + [r["id"] for r in accepted]
        texts = [e.instruction for e in seeds] + [r["instruction"] for r in accepted]
        if ids:
            with one_blas_thread():
                self.index.add_reference(ids, texts)
        self.references = len(ids)

    def sift(self, passed: list[Passed], max_kept: int) -> list[tuple[str, DuplicateHit | None]]:
        from gra_local.core.quality.dedup import DedupItem

        if max_kept <= 0 or not passed:
            return []
        items = [DedupItem(id=i, text=t, score=s) for i, t, s in passed]
        out: list[tuple[str, DuplicateHit | None]] = []
        with one_blas_thread():
            results = self.index.filter(items, max_kept=max_kept)
        for res in results:
            if res.kept:
                out.append((res.id, None))
            else:
                assert res.duplicate_of is not None and res.similarity is not None
                out.append((res.id, DuplicateHit(res.duplicate_of, round(float(res.similarity), 4),
                                                  self.threshold, res.method or "embedding")))
        return out

    def describe(self) -> dict:
        return {"enabled": True, "embedder": self.embedder.name,
                "embedder_sha256": self.embedder.sha256, "threshold": self.threshold,
                "references": self.references}


def one_blas_thread() -> AbstractContextManager[object]:
    """numpy's BLAS threads spin-wait: next to busy llama.cpp workers or a UI thread, a
    2-core machine took 123 s instead of 5 s for one tiny run (13 s instead of 0.9 s for 7
    embeddings). gra_local/__init__ sets OPENBLAS_NUM_THREADS, but only a process that
    imports us before numpy sees it; this limit holds whatever the import order."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def make_gate(embedder: Embedder | None, cache_dir: Path, threshold: float | None,
              minhash: bool) -> Gate:
    if embedder is None or threshold is None:
        return NoDedup()
    return DedupGate(embedder, cache_dir, threshold, minhash)
