"""A persistent cache of sentence embeddings, so a resumed run or the next round does not
embed the seeds and every kept sample again.

One file per embedder under `cache_dir/embeddings/`: a JSON header line naming the
embedder (name, sha256, dim), then fixed-size records `sha256(text) | dim × float32 |
crc32`. The file is append-only; a torn last record (a crash mid-write) is ignored on
read and cut off before the next append, and a record whose crc does not match is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from gra_local.core.errors import DedupError

try:  # POSIX: serialise appends from two runs sharing one cache directory
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

FORMAT = "gra-local-embeddings/1"
KEY_BYTES = 32


@runtime_checkable
class Embedder(Protocol):
    """What dedup needs from an embedding model (gra_local.embed.MiniLMEmbedder is one)."""

    name: str
    sha256: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """len(texts) × dim float32, one row per text, in order."""
        ...


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _record_dtype(dim: int) -> np.dtype:
    return np.dtype([("key", f"S{KEY_BYTES}"), ("vec", "<f4", (dim,)), ("crc", "<u4")])


class EmbeddingCache:
    """Vectors keyed by sha256 of the text, for one embedder; `vectors()` embeds only what
    is missing, in batches, and appends each batch to the file as soon as it is done."""

    def __init__(self, cache_dir: Path, embedder: Embedder, batch_size: int = 256) -> None:
        self.embedder = embedder
        self.dim = int(embedder.dim)
        self.batch_size = batch_size
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", embedder.name)
        self.path = Path(cache_dir) / "embeddings" / f"{slug}-{embedder.sha256[:16]}.vec"
        header = {"format": FORMAT, "embedder": embedder.name, "sha256": embedder.sha256,
                  "dim": self.dim}
        self._header = (json.dumps(header, sort_keys=True) + "\n").encode("utf-8")
        self._dtype = _record_dtype(self.dim)
        self._rows: dict[bytes, int] = {}
        self._mat = np.empty((0, self.dim), dtype=np.float32)
        self._used = 0
        self.skipped = 0  # records dropped on load: torn tail or bad crc
        self._load()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, text: str) -> bool:
        return text_key(text) in self._rows

    # reading

    def _check_header(self, data: bytes) -> int:
        """Length of the file's header; raises when the file belongs to another model."""
        end = data.find(b"\n", 0, 4096)
        try:
            found = json.loads(data[:end]) if end > 0 else None
        except ValueError:
            found = None
        if not isinstance(found, dict) or found.get("format") != FORMAT:
            raise DedupError(f"{self.path}: not a gra-local embedding cache (unreadable header); "
                             "delete the file and it is rebuilt on the next run")
        ours = (self.embedder.name, self.embedder.sha256, self.dim)
        theirs = (found.get("embedder"), found.get("sha256"), found.get("dim"))
        if theirs != ours:
            raise DedupError(
                f"{self.path}: embedding cache made by {theirs[0]} (sha256 {theirs[1]}, dim "
                f"{theirs[2]}), but this run embeds with {ours[0]} (sha256 {ours[1]}, dim "
                f"{ours[2]}); vectors of different models cannot be mixed: delete the file "
                "and it is rebuilt on the next run")
        return end + 1

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise DedupError(f"{self.path}: cannot read the embedding cache ({exc})") from None
        if self._header.startswith(data):  # empty, or torn while writing the header
            return
        body = memoryview(data)[self._check_header(data):]
        size = self._dtype.itemsize
        count = len(body) // size
        self.skipped = 1 if len(body) % size else 0
        records = np.frombuffer(body[:count * size], dtype=self._dtype)
        raw = body[:count * size].cast("B")
        crcs = records["crc"].tolist()  # once: a structured field view per record is slow
        good = [i for i in range(count) if zlib.crc32(raw[i * size:(i + 1) * size - 4]) == crcs[i]]
        self.skipped += count - len(good)
        self._mat = np.array(records["vec"][good], dtype=np.float32)
        keys = records["key"][good].tolist()
        self._rows = {k: i for i, k in enumerate(keys)}  # a later duplicate key wins: same vector
        self._used = len(self._mat)

    # writing

    def _append(self, keys: list[bytes], vecs: np.ndarray) -> None:
        records = np.zeros(len(keys), dtype=self._dtype)
        records["key"] = keys
        records["vec"] = vecs
        raw = memoryview(records.tobytes()).cast("B")
        size = self._dtype.itemsize
        records["crc"] = [zlib.crc32(raw[i * size:(i + 1) * size - 4]) for i in range(len(keys))]
        payload = records.tobytes()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.path, "r+b" if self.path.exists() else "w+b") as fh:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released on close
                fh.seek(0)
                head = fh.read(4096)
                if self._header.startswith(head):  # new file (or torn header): start it
                    fh.seek(0)
                    fh.truncate()
                    fh.write(self._header)
                    start = len(self._header)
                else:
                    start = self._check_header(head)
                end = fh.seek(0, os.SEEK_END)
                torn = (end - start) % size
                if torn:  # a crash left part of a record: cut it so records stay aligned
                    end -= torn
                    fh.truncate(end)
                fh.seek(end)
                fh.write(payload)
                fh.flush()
        except OSError as exc:
            raise DedupError(f"{self.path}: cannot write the embedding cache ({exc})") from None

    def _store(self, keys: list[bytes], vecs: np.ndarray) -> None:
        self._append(keys, vecs)
        need = self._used + len(keys)
        if need > self._mat.shape[0]:  # grow by doubling: appends stay amortised O(1)
            grown = np.empty((max(2 * self._mat.shape[0], need, 1024), self.dim), dtype=np.float32)
            grown[:self._used] = self._mat[:self._used]
            self._mat = grown
        self._mat[self._used:need] = vecs
        for i, key in enumerate(keys):
            self._rows[key] = self._used + i
        self._used = need

    # the one public query

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """len(texts) × dim float32 as the embedder returned them; missing ones are embedded."""
        keys = [text_key(t) for t in texts]
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._rows and key not in missing:
                missing[key] = text
        todo = list(missing.items())
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            vecs = np.asarray(self.embedder.embed([t for _, t in batch]), dtype=np.float32)
            if vecs.shape != (len(batch), self.dim) or not np.isfinite(vecs).all():
                raise DedupError(f"embedder {self.embedder.name} returned {vecs.shape} vectors "
                                 f"(or non-finite values) for {len(batch)} texts, expected "
                                 f"{len(batch)}×{self.dim}")
            self._store([k for k, _ in batch], vecs)
        return self._mat[[self._rows[k] for k in keys]] if keys else np.empty((0, self.dim), np.float32)
