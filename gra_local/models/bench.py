"""`gra-local models bench NAME`: a short real load + generation, stored for ETAs.

Figures are keyed by the model file (resolved path, size, mtime) and how it was placed
(GPU layers, threads), so a changed file or placement is measured again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
from pydantic import BaseModel, ValidationError

from gra_local.core.backend import Backend, ChatRequest
from gra_local.core.config import ModelSpec
from gra_local.core.rundir.journal import write_json_atomic

# About 300 prompt tokens: long enough to time prompt processing, short enough for a CPU.
_PROMPT = ("Summarise the following notes in one sentence. " + " ".join(
    f"Note {i}: the meeting moved from room {i} to room {i + 1} because the projector failed."
    for i in range(16)))


class BenchResult(BaseModel):
    model: str
    load_seconds: float
    prompt_tokens_per_s: float
    decode_tokens_per_s: float
    n_gpu_layers: int
    measured_at: float


def _key(path: Path, n_gpu_layers: int) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|gpu{n_gpu_layers}|cpu{os.cpu_count()}"


def run_bench(spec: ModelSpec, backend: Backend, decode_tokens: int = 64) -> BenchResult:
    start = time.perf_counter()
    session = backend.load(spec)
    load = time.perf_counter() - start
    try:
        messages = [{"role": "user", "content": _PROMPT}]
        prompt = session.chat(ChatRequest(messages=messages, temperature=0.0, top_p=1.0,
                                          max_tokens=1, seed=0))
        # Same prompt again: its prefix is cached, so this call is almost all decoding.
        decode = session.chat(ChatRequest(messages=messages, temperature=0.7, top_p=0.95,
                                          max_tokens=decode_tokens, seed=1))
    finally:
        session.close()
    evaluated = prompt.prompt_evaluated or prompt.prompt_tokens
    return BenchResult(
        model=spec.name, load_seconds=round(load, 3),
        prompt_tokens_per_s=round(evaluated / max(prompt.seconds, 1e-6), 1),
        decode_tokens_per_s=round(decode.completion_tokens / max(decode.seconds, 1e-6), 1),
        n_gpu_layers=session.info.n_gpu_layers, measured_at=time.time())


class BenchStore:
    """Bench figures in the cache directory (bench.json), replaced atomically."""

    def __init__(self, cache_dir: Path) -> None:
        self.path = cache_dir / "bench.json"

    def _read(self) -> dict[str, dict]:
        try:
            data = orjson.loads(self.path.read_bytes())
            return data if isinstance(data, dict) else {}
        except (OSError, orjson.JSONDecodeError):
            return {}

    def save(self, model_file: Path, result: BenchResult) -> None:
        data = self._read()
        data[_key(model_file, result.n_gpu_layers)] = result.model_dump()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, data)

    def latest(self, model_file: Path) -> BenchResult | None:
        """The newest figures for this file, whatever placement they were taken with."""
        prefix = _key(model_file, 0).rsplit("|gpu", 1)[0]
        found = []
        for key, value in self._read().items():
            if key.startswith(prefix + "|"):
                try:
                    found.append(BenchResult.model_validate(value))
                except ValidationError:
                    continue
        return max(found, key=lambda r: r.measured_at) if found else None
