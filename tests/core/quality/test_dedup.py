"""Semantic dedup: the greedy order, the threshold, references, index growth, the
embedding cache (reuse, model mismatch, torn tail) and MinHash; then the real MiniLM."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from gra_local.core.errors import DedupError
from gra_local.core.quality import dedup
from gra_local.core.quality.dedup import DedupIndex, DedupItem, DedupResult, EmbeddingCache

DIM = 32


class FakeEmbedder:
    """Deterministic vectors: `fixed` where given, else a sum of per-word random vectors,
    so texts sharing most words are close. Records every text it is asked to embed."""

    dim = DIM

    def __init__(self, name: str = "fake", fixed: dict[str, np.ndarray] | None = None) -> None:
        self.name = name
        self.sha256 = hashlib.sha256(name.encode()).hexdigest()
        self.fixed = fixed or {}
        self.calls: list[list[str]] = []

    def _vector(self, text: str) -> np.ndarray:
        if text in self.fixed:
            return np.asarray(self.fixed[text], dtype=np.float32)
        total = np.zeros(DIM)
        for word in text.lower().split():
            seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
            total += np.random.default_rng(seed).standard_normal(DIM)
        return (total / max(float(np.linalg.norm(total)), 1e-12)).astype(np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([self._vector(t) for t in texts], dtype=np.float32).reshape(len(texts), DIM)

    @property
    def embedded(self) -> list[str]:
        return [t for call in self.calls for t in call]


def unit(*xs: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[:len(xs)] = xs
    return v / np.linalg.norm(v)


def make_index(tmp_path: Path, fixed: dict[str, np.ndarray] | None = None, **kw) -> DedupIndex:
    emb = FakeEmbedder(fixed=fixed)
    kw.setdefault("use_minhash", False)
    return DedupIndex(emb, EmbeddingCache(tmp_path, emb), **kw)


def decided(results: list[DedupResult]) -> list[tuple[str, bool, str | None]]:
    return [(r.id, r.kept, r.duplicate_of) for r in results]


# the greedy pass


def test_highest_score_wins_and_results_follow_processing_order(tmp_path: Path) -> None:
    fixed = {"low": unit(1, 0.01), "high": unit(1, 0), "other": unit(0, 1)}
    index = make_index(tmp_path, fixed)
    results = index.filter([DedupItem("a", "low", 5.0), DedupItem("b", "other", 7.0),
                            DedupItem("c", "high", 9.0)])
    assert decided(results) == [("c", True, None), ("b", True, None), ("a", False, "c")]
    assert results[2].method == "embedding" and results[2].similarity > 0.99
    assert index.ids == ["c", "b"]


def test_ties_keep_the_given_order_and_nan_scores_go_last(tmp_path: Path) -> None:
    fixed = {"x": unit(1, 0), "y": unit(1, 0.001)}
    results = make_index(tmp_path, fixed).filter(
        [DedupItem("n", "x", float("nan")), DedupItem("first", "y", 8.0), DedupItem("second", "x", 8.0)])
    assert decided(results) == [("first", True, None), ("second", False, "first"), ("n", False, "first")]


@pytest.mark.parametrize("delta, kept", [(-1e-6, False), (0.0, False), (1e-6, True)])
def test_threshold_boundary(tmp_path: Path, delta: float, kept: bool) -> None:
    a, b = unit(1, 0), unit(3, 4)  # cosine 0.6
    cos = float(dedup.normalise_rows(a[None])[0] @ dedup.normalise_rows(b[None])[0])
    index = make_index(tmp_path, {"a": a, "b": b}, threshold=cos + delta)
    index.add_reference(["ref"], ["a"])
    (result,) = index.filter([DedupItem("new", "b", 9.0)])
    assert result.kept is kept  # "below the threshold" keeps; equal to it is a duplicate
    if not kept:
        assert result.duplicate_of == "ref" and result.similarity == pytest.approx(0.6, abs=1e-6)


def test_references_are_kept_and_compared_across_calls(tmp_path: Path) -> None:
    fixed = {"s1": unit(1, 0), "s1'": unit(1, 0.001), "n1": unit(0, 1), "n1'": unit(0.001, 1),
             "n2": unit(0, 0, 1)}
    index = make_index(tmp_path, fixed)
    index.add_reference(["seed-1", "seed-1b"], ["s1", "s1'"])  # duplicates of each other: both stay
    first = index.filter([DedupItem("r1", "n1", 9.0), DedupItem("r2", "s1", 9.5)])
    assert decided(first) == [("r2", False, "seed-1"), ("r1", True, None)]
    second = index.filter([DedupItem("r3", "n1'", 10.0), DedupItem("r4", "n2", 1.0)])
    assert decided(second) == [("r3", False, "r1"), ("r4", True, None)]
    assert index.ids == ["seed-1", "seed-1b", "r1", "r4"]


def naive(refs: np.ndarray, ref_ids: list[str], batches: list[list[tuple[str, np.ndarray, float]]],
          threshold: float) -> list[tuple[str, bool, str | None]]:
    """The definition, one item at a time, batch after batch."""
    mat, ids, out = list(refs), list(ref_ids), []
    for batch in batches:
        for item_id, vec, _ in sorted(batch, key=lambda t: -t[2]):
            sims = [float(vec @ m) for m in mat]
            j = int(np.argmax(sims)) if sims else -1
            if sims and sims[j] >= threshold:
                out.append((item_id, False, ids[j]))
            else:
                out.append((item_id, True, None))
                mat.append(vec)
                ids.append(item_id)
    return out


def test_growth_past_a_block_and_chunking_match_the_naive_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "CHUNK", 7)  # several chunks per call,
    monkeypatch.setattr(dedup, "SLICE", 5)  # several index slices per matmul
    rng = np.random.default_rng(3)
    base = dedup.normalise_rows(rng.standard_normal((40, DIM)))
    noise = rng.uniform(0.005, 0.1, (60, 1)) * rng.standard_normal((60, DIM))  # cos ~0.85-1
    noisy = dedup.normalise_rows(base[rng.integers(0, 40, 60)] + noise)
    vecs = np.vstack([base, noisy])  # 100 vectors, many near-duplicate pairs
    fixed = {f"t{i}": v for i, v in enumerate(vecs)}
    index = make_index(tmp_path, fixed, threshold=0.9, block_rows=4)
    index.add_reference([f"ref{i}" for i in range(10)], [f"t{i}" for i in range(10)])
    scores = rng.uniform(0, 10, 90)
    items = [DedupItem(f"i{k}", f"t{k + 10}", float(scores[k])) for k in range(90)]
    got = index.filter(items[:45]) + index.filter(items[45:])
    plain = [(f"i{k}", vecs[k + 10], scores[k]) for k in range(90)]
    assert decided(got) == naive(vecs[:10], [f"ref{i}" for i in range(10)], [plain[:45], plain[45:]], 0.9)
    assert 10 < sum(not r.kept for r in got) < 80  # planted duplicates found, not everything
    kept = [r.id for r in got if r.kept]
    assert len(index) == 10 + len(kept) and index.matrix.shape == (len(index), DIM)
    assert index._mat.shape[0] % 4 == 0 and index._mat.shape[0] >= len(index)
    np.testing.assert_allclose(index.matrix[10:], vecs[[int(i[1:]) + 10 for i in kept]], atol=1e-6)


# the embedding cache


def test_cache_embeds_only_missing_texts_and_persists(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    cache = EmbeddingCache(tmp_path, emb, batch_size=2)
    first = cache.vectors(["a b", "c d", "a b", "e f", "g h"])
    assert emb.calls == [["a b", "c d"], ["e f", "g h"]]  # unique, in batches
    again = cache.vectors(["e f", "x y", "a b"])
    assert emb.calls[-1] == ["x y"]
    np.testing.assert_array_equal(again[[0, 2]], first[[3, 0]])
    emb2 = FakeEmbedder()
    reopened = EmbeddingCache(tmp_path, emb2)
    assert len(reopened) == 5 and reopened.skipped == 0
    np.testing.assert_array_equal(reopened.vectors(["a b", "x y"]), again[[2, 1]])
    assert emb2.calls == []
    assert reopened.path.parent == tmp_path / "embeddings"


def test_index_uses_the_cache(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    cache = EmbeddingCache(tmp_path, emb)
    cache.vectors(["alpha beta", "gamma delta"])  # what DedupGate.embed does before checks
    index = DedupIndex(emb, cache, use_minhash=False)
    index.add_reference(["s"], ["alpha beta"])
    index.filter([DedupItem("n", "gamma delta", 1.0), DedupItem("m", "new words here", 0.5)])
    assert emb.embedded == ["alpha beta", "gamma delta", "new words here"]


def test_cache_of_another_model_is_refused_with_the_fix(tmp_path: Path) -> None:
    mine = EmbeddingCache(tmp_path, FakeEmbedder("model-a"))
    mine.vectors(["some text"])
    theirs = FakeEmbedder("model-b")
    target = EmbeddingCache(tmp_path, theirs).path  # nothing written yet
    shutil.copy(mine.path, target)  # e.g. copied or renamed by hand
    with pytest.raises(DedupError) as info:
        EmbeddingCache(tmp_path, theirs)
    message = info.value.message
    assert str(target) in message and "model-a" in message and "model-b" in message
    assert "delete the file" in message
    target.write_bytes(b"garbage\n" * 10)
    with pytest.raises(DedupError, match="unreadable header"):
        EmbeddingCache(tmp_path, theirs)


def test_torn_tail_and_bad_records_are_ignored_then_repaired(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    cache = EmbeddingCache(tmp_path, emb)
    vecs = cache.vectors(["one", "two", "three"])
    with open(cache.path, "ab") as fh:
        fh.write(b"\x01" * 50)  # a crash in the middle of the next record
    torn = EmbeddingCache(tmp_path, FakeEmbedder())
    assert len(torn) == 3 and torn.skipped == 1
    torn.vectors(["four"])  # the append cuts the torn bytes first
    fresh = EmbeddingCache(tmp_path, FakeEmbedder())
    assert len(fresh) == 4 and fresh.skipped == 0
    np.testing.assert_array_equal(fresh.vectors(["one", "two", "three"]), vecs)
    data = bytearray(cache.path.read_bytes())
    data[-10] ^= 0xFF  # flip a bit inside the last record ("four")
    cache.path.write_bytes(bytes(data))
    emb3 = FakeEmbedder()
    damaged = EmbeddingCache(tmp_path, emb3)
    assert len(damaged) == 3 and damaged.skipped == 1 and "four" not in damaged
    damaged.vectors(["four"])
    assert emb3.calls == [["four"]]


def test_cache_torn_while_writing_its_header_starts_over(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    path = EmbeddingCache(tmp_path, emb).path
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"dim": ')
    cache = EmbeddingCache(tmp_path, emb)
    assert len(cache) == 0
    cache.vectors(["text"])
    assert len(EmbeddingCache(tmp_path, emb)) == 1


# MinHash


def test_minhash_catches_near_verbatim_copies_without_embedding(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    index = DedupIndex(emb, EmbeddingCache(tmp_path, emb), use_minhash=True)
    seed = "Write a short story about a lighthouse keeper who finds a message in a bottle on the shore."
    index.add_reference(["seed"], [seed])
    copy = seed.upper().replace(".", "!")  # same words after normalisation
    inner = "List three practical ways to reduce household energy use during the winter months."
    results = index.filter([DedupItem("copy", copy, 9.0), DedupItem("a", inner, 8.0),
                            DedupItem("b", inner + " ", 7.0)])
    assert decided(results) == [("copy", False, "seed"), ("a", True, None), ("b", False, "a")]
    assert results[0].method == results[2].method == "minhash"
    assert results[0].similarity == pytest.approx(1.0)
    assert copy not in emb.embedded  # caught before embedding


def test_minhash_shingles() -> None:
    mh = dedup.MinHashFilter()
    assert mh.shingles("Hello, World!") == [b"hello world"]
    assert mh.shingles("a b c d") == [b"a b c", b"b c d"]


# the run's gate (gra_local.core.quality.dedup_gate) drives the index through this API


def test_gate_round_trip(tmp_path: Path) -> None:
    from gra_local.core.quality.dedup_gate import make_gate

    gate = make_gate(FakeEmbedder(), tmp_path, 0.9, minhash=True)
    out = gate.sift([("r2", "red green blue", 8.0), ("r1", "red green blue", 9.0),
                     ("r3", "cyan magenta", 7.0), ("r4", "black white", 6.0)], max_kept=2)
    assert [i for i, _ in out] == ["r1", "r2", "r3"]  # r4 comes after the second keeper
    assert out[0][1] is None and out[2][1] is None
    hit = out[1][1]
    assert hit is not None and hit.duplicate_of == "r1" and hit.method == "minhash"


# the real all-MiniLM-L6-v2


NEAR = ("Write a Python function that reverses a string.", "Write a Python function to reverse a string.")
PARAPHRASE = "Implement a routine in Python which returns the input text backwards."
UNRELATED = "Summarize the main causes of the French Revolution in three sentences."


def test_real_embeddings_drop_near_duplicates_only(minilm, tmp_path: Path) -> None:
    index = DedupIndex(minilm, EmbeddingCache(tmp_path, minilm), threshold=0.9, use_minhash=False)
    index.add_reference(["seed"], [NEAR[0]])
    results = index.filter([DedupItem("near", NEAR[1], 9.0), DedupItem("para", PARAPHRASE, 8.5),
                            DedupItem("other", UNRELATED, 8.0)])
    assert decided(results) == [("near", False, "seed"), ("para", True, None), ("other", True, None)]
    assert results[0].similarity > 0.97


def test_real_cosines_are_in_sensible_ranges(minilm) -> None:
    v = minilm.embed([NEAR[0], NEAR[1], PARAPHRASE, UNRELATED,
                      "What is the capital of France?", "Which city is the capital of France?"])
    cos = v @ v.T
    assert cos[0, 1] > 0.97  # the same request, reworded slightly
    assert 0.6 < cos[0, 2] < 0.9  # a paraphrase: related, below the 0.9 threshold
    assert cos[0, 3] < 0.3 and cos[2, 3] < 0.3  # unrelated tasks
    assert cos[4, 5] > 0.9


def test_max_kept_stops_after_the_last_kept_item(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "CHUNK", 2)  # the budget carries across chunks
    fixed = {"a": unit(1, 0), "a'": unit(1, 0.001), "b": unit(0, 1), "c": unit(0, 0, 1), "d": unit(0, 0, 0, 1)}
    index = make_index(tmp_path, fixed)
    items = [DedupItem(i, t, s) for i, t, s in
             [("1", "a", 9.0), ("2", "a'", 8.0), ("3", "b", 7.0), ("4", "c", 6.0), ("5", "d", 5.0)]]
    results = index.filter(items, max_kept=2)
    assert decided(results) == [("1", True, None), ("2", False, "1"), ("3", True, None)]
    assert index.ids == ["1", "3"]  # "c" and "d" were not decided and did not join
    assert decided(index.filter(items[3:], max_kept=0)) == []
