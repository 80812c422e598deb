"""Where a run meets dedup: seeds and kept samples are the references, and every sample
the panel passes is checked against them, one at a time, highest μ first (step 4b).

A run without an embedder (dedup off) gets `NoDedup`, which keeps everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gra_local.core.annotate import PoolEntry
    from gra_local.core.dedup import DedupIndex, Embedder


@dataclass(frozen=True)
class DuplicateHit:
    duplicate_of: str
    similarity: float
    threshold: float
    method: str  # "embedding" or "minhash"


class Gate(Protocol):
    def prime(self, seeds: list[PoolEntry], accepted: list[dict]) -> None: ...
    def embed(self, texts: list[str]) -> None: ...
    def check(self, item_id: str, text: str, score: float) -> DuplicateHit | None: ...
    def describe(self) -> dict: ...


class NoDedup:
    def prime(self, seeds: list[PoolEntry], accepted: list[dict]) -> None:
        pass

    def embed(self, texts: list[str]) -> None:
        pass

    def check(self, item_id: str, text: str, score: float) -> DuplicateHit | None:
        return None

    def describe(self) -> dict:
        return {"enabled": False}


class DedupGate:
    """Semantic dedup for one run; the index lives in memory and is rebuilt on resume from
    the pool and accepted.jsonl (embeddings come back from the on-disk cache)."""

    def __init__(self, embedder: Embedder, cache_dir: Path, threshold: float,
                 minhash: bool) -> None:
        from gra_local.core.dedup import DedupIndex, EmbeddingCache

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
            self.index.add_reference(ids, texts)
        self.references = len(ids)

    def embed(self, texts: list[str]) -> None:
        """Embed a batch's texts in one go (and cache them) before the one-by-one checks."""
        if texts:
            self.cache.vectors(texts)

    def check(self, item_id: str, text: str, score: float) -> DuplicateHit | None:
        from gra_local.core.dedup import DedupItem

        (result,) = self.index.filter([DedupItem(id=item_id, text=text, score=score)])
        if result.kept:
            return None
        assert result.duplicate_of is not None and result.similarity is not None
        return DuplicateHit(result.duplicate_of, round(float(result.similarity), 4),
                            self.threshold, result.method or "embedding")

    def describe(self) -> dict:
        return {"enabled": True, "embedder": self.embedder.name,
                "embedder_sha256": self.embedder.sha256, "threshold": self.threshold,
                "references": self.references}


def make_gate(embedder: Embedder | None, cache_dir: Path, threshold: float | None,
              minhash: bool) -> Gate:
    if embedder is None or threshold is None:
        return NoDedup()
    return DedupGate(embedder, cache_dir, threshold, minhash)
