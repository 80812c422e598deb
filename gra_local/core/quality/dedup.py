"""Semantic dedup (GRA step 4b): highest score first, keep a sample only when its cosine
to every reference (seeds, earlier rounds) and every sample kept so far is below the
threshold; an optional MinHash pass drops near-verbatim copies before they are embedded.

The index is a normalised float32 matrix in preallocated, growing blocks. Each `filter`
call does one matmul of its new items against the index (per CHUNK items, over SLICE
index rows at a time) and decides within the call greedily from the new items' own gram
matrix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from gra_local.core.quality.embed_cache import Embedder, EmbeddingCache

if TYPE_CHECKING:  # datasketch (and scipy under it) loads only when MinHash is used
    from datasketch import MinHash

__all__ = ["CHUNK", "DedupIndex", "DedupItem", "DedupResult", "Embedder", "EmbeddingCache",
           "MinHashFilter", "normalise_rows"]

CHUNK = 1024  # new items per matmul against the index (and per gram matrix)
SLICE = 16384  # index rows per matmul, so the similarity buffer stays small at any size
Method = Literal["embedding", "minhash"]


@dataclass(frozen=True, slots=True)
class DedupItem:
    id: str
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class DedupResult:
    id: str
    kept: bool
    duplicate_of: str | None = None
    similarity: float | None = None  # cosine, or estimated Jaccard when method is "minhash"
    method: Method | None = None


def normalise_rows(vecs: np.ndarray) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.maximum(norms, np.float32(1e-12))


class MinHashFilter:
    """MinHash LSH over word 3-shingles of the normalised text: finds near-verbatim copies
    cheaply. Keys are the caller's row numbers; signatures are kept to estimate Jaccard."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 3) -> None:
        from datasketch import MinHash, MinHashLSH

        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle = shingle
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        # copies of one empty MinHash share its permutations: building them costs ~0.5 ms
        # per MinHash.bulk call, which one-item filter() calls would pay every time
        self._empty = MinHash(num_perm=num_perm)
        self._sigs: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._sigs)

    def shingles(self, text: str) -> list[bytes]:
        words = re.sub(r"[\W_]+", " ", text.lower()).split()
        n = self.shingle
        if len(words) <= n:  # short texts are one shingle, so equal texts still match
            return [" ".join(words).encode("utf-8")]
        return [" ".join(words[i:i + n]).encode("utf-8") for i in range(len(words) - n + 1)]

    def signatures(self, texts: Sequence[str]) -> list[MinHash]:
        out = []
        for text in texts:
            sig = self._empty.copy()
            sig.update_batch(self.shingles(text))
            out.append(sig)
        return out

    def add(self, key: int, sig: MinHash) -> None:
        self._lsh.insert(key, sig, check_duplication=False)
        self._sigs[key] = np.asarray(sig.hashvalues)

    def match(self, sig: MinHash) -> tuple[int, float] | None:
        """The most similar stored key with estimated Jaccard ≥ threshold, if any."""
        values = np.asarray(sig.hashvalues)
        best: tuple[int, float] | None = None
        for key in self._lsh.query(sig):
            jaccard = float(np.mean(self._sigs[key] == values))
            if jaccard >= self.threshold and (best is None or jaccard > best[1]):
                best = (key, jaccard)
        return best


class DedupIndex:
    """References plus everything kept so far; `filter` decides new items against them."""

    def __init__(self, embedder: Embedder, cache: EmbeddingCache, threshold: float = 0.9,
                 use_minhash: bool = True, minhash_threshold: float = 0.8,
                 num_perm: int = 128, block_rows: int = 4096) -> None:
        if cache.dim != embedder.dim:
            raise ValueError(f"cache holds {cache.dim}-d vectors, embedder makes {embedder.dim}-d")
        self.embedder = embedder
        self.cache = cache
        self.threshold = threshold
        self.block_rows = block_rows
        self.minhash = MinHashFilter(minhash_threshold, num_perm) if use_minhash else None
        self._mat = np.empty((block_rows, embedder.dim), dtype=np.float32)
        self._ids: list[str] = []

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def matrix(self) -> np.ndarray:
        """The normalised rows in use (a view: do not write to it)."""
        return self._mat[:len(self._ids)]

    def _append(self, ids: Sequence[str], vecs: np.ndarray, sigs: Sequence[MinHash] | None) -> None:
        n, k = len(self._ids), len(ids)
        if n + k > self._mat.shape[0]:
            # grow by whole blocks, at least doubling, so 50K appends copy O(N) rows in all
            rows = max(2 * self._mat.shape[0], n + k)
            rows = -(-rows // self.block_rows) * self.block_rows
            grown = np.empty((rows, self._mat.shape[1]), dtype=np.float32)
            grown[:n] = self._mat[:n]
            self._mat = grown
        self._mat[n:n + k] = vecs
        self._ids.extend(ids)
        if self.minhash is not None and sigs is not None:
            for i, sig in enumerate(sigs):
                self.minhash.add(n + i, sig)

    def add_reference(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Seeds and previously kept samples: always kept; new items are compared to them."""
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        for start in range(0, len(ids), CHUNK):
            part = list(texts[start:start + CHUNK])
            vecs = normalise_rows(self.cache.vectors(part))
            sigs = self.minhash.signatures(part) if self.minhash is not None else None
            self._append(ids[start:start + CHUNK], vecs, sigs)

    def filter(self, items: Sequence[DedupItem], max_kept: int | None = None) -> list[DedupResult]:
        """Decide `items` highest score first (ties: given order); kept ones join the index.
        Results come in that processing order. With `max_kept`, stop once that many are
        kept: the items after the last kept one get no result and stay out of the index."""
        order = sorted(range(len(items)), key=lambda i: _sort_key(items[i].score))
        ordered = [items[i] for i in order]
        results: list[DedupResult] = []
        budget = len(ordered) if max_kept is None else max_kept
        for start in range(0, len(ordered), CHUNK):
            if budget <= 0:
                break
            part = self._filter_chunk(ordered[start:start + CHUNK], budget)
            budget -= sum(r.kept for r in part)
            results.extend(part)
        return results

    def _best_in_index(self, vecs: np.ndarray, n_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Per new row, the most similar index row and its cosine: the chunk × index matmul,
        taken in slices of SLICE index rows so the similarity buffer stays ~64 MB."""
        best_row = np.zeros(len(vecs), dtype=np.int64)
        best_sim = np.full(len(vecs), -np.inf, dtype=np.float32)
        rows = np.arange(len(vecs))
        for lo in range(0, n_index if len(vecs) else 0, SLICE):
            sims = vecs @ self._mat[lo:min(lo + SLICE, n_index)].T
            arg = sims.argmax(axis=1)
            top = sims[rows, arg]
            better = top > best_sim
            best_row[better] = arg[better] + lo
            best_sim[better] = top[better]
        return best_row, best_sim

    def _filter_chunk(self, chunk: list[DedupItem], budget: int) -> list[DedupResult]:
        mh = self.minhash
        sigs = mh.signatures([it.text for it in chunk]) if mh is not None else None
        # near-verbatim copies of what is already indexed need no embedding at all
        early: list[tuple[int, float] | None] = (
            [mh.match(s) for s in sigs] if mh is not None and sigs is not None and len(mh)
            else [None] * len(chunk))
        todo = [i for i, hit in enumerate(early) if hit is None]
        vecs = normalise_rows(self.cache.vectors([chunk[i].text for i in todo])) if todo \
            else np.empty((0, self._mat.shape[1]), dtype=np.float32)
        pos = {item: p for p, item in enumerate(todo)}  # chunk index -> row of vecs
        n_index = len(self._ids)
        best_row, best_sim = self._best_in_index(vecs, n_index)
        gram = vecs @ vecs.T
        kept: list[int] = []  # rows of vecs kept in this chunk
        kept_sigs = np.empty((len(chunk), len(sigs[0].hashvalues)) if sigs else (0, 0),
                             dtype=sigs[0].hashvalues.dtype if sigs else np.uint64)
        results: list[DedupResult] = []
        for i, item in enumerate(chunk):
            if len(kept) >= budget:
                break
            hit = early[i]
            if hit is not None:
                results.append(DedupResult(item.id, False, self._ids[hit[0]], hit[1], "minhash"))
                continue
            if mh is not None and sigs is not None and kept:
                jac = (kept_sigs[:len(kept)] == sigs[i].hashvalues).mean(axis=1)
                j = int(jac.argmax())
                if jac[j] >= mh.threshold:
                    dup = chunk[todo[kept[j]]].id
                    results.append(DedupResult(item.id, False, dup, float(jac[j]), "minhash"))
                    continue
            p = pos[i]
            sim, dup_id = float(best_sim[p]), (self._ids[int(best_row[p])] if n_index else None)
            if kept:
                row = gram[p, kept]
                j = int(row.argmax())
                if float(row[j]) > sim:
                    sim, dup_id = float(row[j]), chunk[todo[kept[j]]].id
            if dup_id is not None and sim >= self.threshold:
                results.append(DedupResult(item.id, False, dup_id, min(sim, 1.0), "embedding"))
                continue
            results.append(DedupResult(item.id, True))
            if sigs is not None:
                kept_sigs[len(kept)] = sigs[i].hashvalues
            kept.append(p)
        self._append([chunk[todo[p]].id for p in kept], vecs[kept],
                     [sigs[todo[p]] for p in kept] if sigs is not None else None)
        return results


def _sort_key(score: float) -> float:
    """Highest score first; a NaN score sorts last rather than scrambling the order."""
    return math.inf if math.isnan(score) else -score
