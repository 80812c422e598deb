#!/usr/bin/env python3
"""Benchmark: semantic dedup at 50K (or any size), and real all-MiniLM-L6-v2 throughput.

a. Index: --refs synthetic unit vectors (dim 384) become references (add_reference), then
   --items new items are filtered in batches of --batch. A fraction of the items are
   planted near-duplicates (cosine ~0.95) of references or of earlier items, and a few
   are near-verbatim text copies (for the MinHash pass). Texts are random word strings; a
   lookup "embedder" returns the prepared vectors, so this times the index and the
   on-disk cache, not a model. Reported: add_reference, filter, reopening the cache.
b. One item per filter() call (what DedupGate.check does) for --single more items against
   the final index, and the naive textbook loop (one matvec per item against the whole
   index, np.vstack per kept item) on the first --naive items over the references,
   extrapolated to all items (a lower bound: the real index grows as items are kept).
c. MiniLM: if the embedder is fetched, texts/s for --minilm-texts (256, the cache batch
   size) instructions of 15-40 words in one embed() call, best of --repeat.

The last line printed is `dedup_<n>_seconds=<add_reference + filter seconds>`, its name
carrying the size measured (figure_name): `dedup_50k_seconds` for the default 50K
references + 50K items, `dedup_5k_seconds` in quick mode, `dedup_<refs>refs_<items>items_seconds`
when the two differ. A benchmark, not a test: run it on an otherwise idle machine.

`--quick` (CI, seconds): 5000 references + 5000 items, 100 naive and 50 single items,
64 MiniLM texts timed once; the figure is then `dedup_5k_seconds`. Config, cache and data
dirs are private temporary ones (benchlib.private_user_dirs).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gra_local.core import paths
from gra_local.core.quality.dedup import DedupIndex, DedupItem, EmbeddingCache, normalise_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below
import benchlib  # noqa: E402

QUICK = {"refs": 5000, "items": 5000, "naive": 100, "single": 50, "repeat": 1, "minilm_texts": 64}
SEEDS_FILE = Path(__file__).resolve().parent.parent / "gra_local" / "data" / "example_seeds.jsonl"


class LookupEmbedder:
    """Returns the vector prepared for each text; counts what it was asked."""

    name = "bench-lookup"
    sha256 = "0" * 64

    def __init__(self, table: dict[str, np.ndarray], dim: int) -> None:
        self.table = table
        self.dim = dim
        self.embedded = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.embedded += len(texts)
        return np.stack([self.table[t] for t in texts])


def synthetic(refs: int, items: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[float]]:
    """refs + items texts and unit vectors; ~8% of items near a reference, ~4% near an
    earlier item, ~1% a re-cased text copy of a reference."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(5000)]
    n = refs + items
    words = rng.integers(0, len(vocab), (n, 25))
    texts = [" ".join(vocab[w] for w in row[:int(rng.integers(15, 26))]) + f" #{i}"
             for i, row in enumerate(words)]
    vecs = normalise_rows(rng.standard_normal((n, dim)).astype(np.float32))
    kind = rng.random(items)
    for k in range(items):
        i = refs + k
        if kind[k] < 0.08:
            src = int(rng.integers(0, refs))
        elif kind[k] < 0.12 and k > 0:
            src = refs + int(rng.integers(0, k))
        else:
            continue
        vecs[i] = normalise_rows(vecs[src] + 0.33 * normalise_rows(
            rng.standard_normal((1, dim)).astype(np.float32))[0][None])[0]
        if kind[k] < 0.01:  # near-verbatim: the same words, re-cased and re-punctuated
            texts[i] = texts[src].upper().replace(" #", "! #") + " ."
    scores = rng.uniform(0, 10, items).round(2).tolist()
    return texts, vecs, scores


def _size(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def figure_name(refs: int, items: int) -> str:
    """The headline's name, saying the size it was measured at."""
    if refs == items:
        return f"dedup_{_size(refs)}_seconds"
    return f"dedup_{_size(refs)}refs_{_size(items)}items_seconds"


def naive_per_item(ref_vecs: np.ndarray, vecs: np.ndarray, scores: list[float], threshold: float) -> float:
    """Seconds for the textbook loop over `vecs` (highest score first)."""
    start = time.perf_counter()
    mat = ref_vecs.copy()
    for k in sorted(range(len(vecs)), key=lambda j: -scores[j]):
        sims = mat @ vecs[k]
        if float(sims.max()) < threshold:
            mat = np.vstack([mat, vecs[k]])
    return time.perf_counter() - start


def instructions(n: int, seed: int = 0) -> list[str]:
    """n instruction-like texts of 15-40 words built from the bundled seeds."""
    rng = np.random.default_rng(seed)
    base = [json.loads(line)["instruction"] for line in SEEDS_FILE.read_text().splitlines() if line.strip()]
    extra = ["Explain each step briefly.", "Use a concrete example from everyday life.",
             "Keep the answer under two hundred words.", "Mention one common mistake to avoid.",
             "Assume the reader is a first-year university student.",
             "Give the result as a numbered list.", "State any assumptions you make."]
    out = []
    while len(out) < n:
        text = str(rng.choice(base))
        while len(text.split()) < int(rng.integers(15, 41)):
            text += " " + str(rng.choice(extra))
        out.append(" ".join(text.split()[:40]))
    return out


def bench_minilm(repeat: int, n: int = 256) -> None:
    from gra_local.embed.minilm_files import embedder_path, is_present

    data = paths.data_dir()
    if not is_present(data):
        print("minilm: not fetched (gra-local models pull-embedder); skipped")
        return
    from gra_local.embed.minilm import MiniLMEmbedder

    t0 = time.perf_counter()
    model = MiniLMEmbedder(embedder_path(data))
    load = time.perf_counter() - t0
    texts = instructions(n)
    words = np.mean([len(t.split()) for t in texts])
    model.embed(texts[:8])  # warm-up
    best = min(_timed(model.embed, texts) for _ in range(repeat))
    print(f"minilm: load {load:.2f} s; {n} instructions (mean {words:.0f} words) in {best:.2f} s "
          f"= {n / best:.0f} texts/s (best of {repeat})")


def _timed(fn, arg) -> float:  # noqa: ANN001 - a tiny timing helper
    t0 = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refs", type=int, default=50_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--naive", type=int, default=500, help="items timed with the naive loop")
    ap.add_argument("--single", type=int, default=300, help="items timed one filter() call each")
    ap.add_argument("--no-minhash", action="store_true", help="skip the MinHash pass")
    ap.add_argument("--repeat", type=int, default=3, help="MiniLM timing repeats")
    ap.add_argument("--minilm-texts", type=int, default=256, help="texts per MiniLM embed() call")
    args = benchlib.parse_args(ap, QUICK, ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    benchlib.private_user_dirs()

    texts, vecs, scores = synthetic(args.refs, args.items + args.single, args.dim)
    ref_texts, item_texts = texts[:args.refs], texts[args.refs:]
    embedder = LookupEmbedder(dict(zip(texts, vecs, strict=True)), args.dim)
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:
        cache = EmbeddingCache(Path(tmp), embedder)
        index = DedupIndex(embedder, cache, threshold=args.threshold, use_minhash=not args.no_minhash)
        t0 = time.perf_counter()
        index.add_reference([f"ref{i}" for i in range(args.refs)], ref_texts)
        t_ref = time.perf_counter() - t0
        results = []
        t0 = time.perf_counter()
        for start in range(0, args.items, args.batch):
            stop = min(start + args.batch, args.items)
            results += index.filter([DedupItem(f"item{k}", item_texts[k], scores[k])
                                     for k in range(start, stop)])
        t_filter = time.perf_counter() - t0
        size = len(index)
        t0 = time.perf_counter()
        for k in range(args.items, args.items + args.single):
            index.filter([DedupItem(f"item{k}", item_texts[k], scores[k])])
        t_single = (time.perf_counter() - t0) / max(args.single, 1)
        t0 = time.perf_counter()
        reopened = EmbeddingCache(Path(tmp), embedder)
        t_reopen = time.perf_counter() - t0
        cache_mb = cache.path.stat().st_size / 1e6
    dropped = [r for r in results if not r.kept]
    by_minhash = sum(r.method == "minhash" for r in dropped)
    print(f"index: {args.refs} references, {args.items} items in batches of {args.batch}, "
          f"dim {args.dim}, threshold {args.threshold}, minhash {'off' if args.no_minhash else 'on'}")
    print(f"add_reference: {t_ref:.2f} s ({args.refs / t_ref:.0f}/s, includes cache writes)")
    print(f"filter: {t_filter:.2f} s ({args.items / t_filter:.0f} items/s); kept {len(results) - len(dropped)}, "
          f"dropped {len(dropped)} ({by_minhash} by MinHash, not embedded); index now {size}")
    print(f"cache: {cache_mb:.0f} MB, reopened ({len(reopened)} vectors) in {t_reopen:.2f} s; "
          f"embedder called for {embedder.embedded} texts")

    print(f"one item per filter() call: {t_single * 1e3:.1f} ms/item at index size {size} "
          f"(the batched filter: {t_filter / args.items * 1e3:.2f} ms/item)")
    n = min(args.naive, args.items)
    t_naive = naive_per_item(vecs[:args.refs], vecs[args.refs:args.refs + n], scores[:n], args.threshold)
    print(f"naive per-item loop: {n} items in {t_naive:.2f} s ({t_naive / n * 1e3:.1f} ms/item) "
          f"-> >= {t_naive / n * args.items:.0f} s for {args.items} items "
          f"({t_naive / n * args.items / t_filter:.1f}x the batched filter)")

    bench_minilm(args.repeat, args.minilm_texts)
    print(f"{figure_name(args.refs, args.items)}={t_ref + t_filter:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
