"""`gra-local models bench NAME`: a short real load + generation, stored for ETAs.

Figures are keyed by the model file (resolved path, size, mtime), how it was placed (GPU
layers), the machine's cores and the llama.cpp build, so a change of any is measured again.
A model's first load measures the same, shorter (backends.llama.speed).
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from pydantic import BaseModel, ValidationError

from gra_local.core import paths
from gra_local.core.backend import Backend, ChatRequest, Session
from gra_local.core.config import ModelSpec
from gra_local.core.engine.eta import Speed, stages_for
from gra_local.core.options import RunOptions
from gra_local.core.rundir.journal import write_json_atomic

if TYPE_CHECKING:
    from gra_local.models.gguf_info import GGUFInfo

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


def _build() -> str:
    """The llama.cpp build measured with: figures of another build are measured again."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _key(path: Path, n_gpu_layers: int) -> str:
    st = path.stat()
    return (f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|gpu{n_gpu_layers}|cpu{os.cpu_count()}"
            f"|llama{_build()}")


def measure(session: Session, name: str, load_seconds: float, decode_tokens: int = 64) -> BenchResult:
    """Time a ~300-token prompt, then `decode_tokens` generated after the same prompt (its
    prefix cached, so almost all decoding), on a loaded session."""
    messages = [{"role": "user", "content": _PROMPT}]
    prompt = session.chat(ChatRequest(messages=messages, temperature=0.0, top_p=1.0,
                                      max_tokens=1, seed=0))
    decode = session.chat(ChatRequest(messages=messages, temperature=0.7, top_p=0.95,
                                      max_tokens=decode_tokens, seed=1))
    evaluated = prompt.prompt_evaluated or prompt.prompt_tokens
    return BenchResult(
        model=name, load_seconds=round(load_seconds, 3),
        prompt_tokens_per_s=round(evaluated / max(prompt.seconds, 1e-6), 1),
        decode_tokens_per_s=round(decode.completion_tokens / max(decode.seconds, 1e-6), 1),
        n_gpu_layers=session.info.n_gpu_layers, measured_at=time.time())


def run_bench(spec: ModelSpec, backend: Backend, decode_tokens: int = 64) -> BenchResult:
    start = time.perf_counter()
    session = backend.load(spec)
    load = time.perf_counter() - start
    try:
        return measure(session, spec.name, load, decode_tokens)
    finally:
        session.close()


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

    def get(self, model_file: Path, n_gpu_layers: int) -> BenchResult | None:
        """The figures for this file, build and machine with this placement; None: none yet."""
        value = self._read().get(_key(model_file, n_gpu_layers))
        try:
            return None if value is None else BenchResult.model_validate(value)
        except ValidationError:
            return None

    def latest(self, model_file: Path) -> BenchResult | None:
        """The newest figures for this file, whatever placement they were taken with."""
        prefix, _, build = _key(model_file, 0).partition("|gpu")
        build = build.partition("|llama")[2]
        found = []
        for key, value in self._read().items():
            if key.startswith(prefix + "|") and key.endswith(f"|llama{build}"):
                try:
                    found.append(BenchResult.model_validate(value))
                except ValidationError:
                    continue
        return max(found, key=lambda r: r.measured_at) if found else None


def predict_from_cache(opts: RunOptions, checked: list[tuple[ModelSpec, GGUFInfo]],
                       endpoints: list[str]) -> tuple[float | None, str]:
    """Predicted duration from stored speed figures (`models bench`, or a first load's
    probe), and the line that says so: light enough for the app's plan box."""
    if endpoints:
        return None, f"no ETA: {', '.join(endpoints)} run(s) on a server, which `models bench` does not time"
    store = BenchStore(paths.cache_dir())
    speeds, missing = {}, []
    for spec, info in checked:
        bench = store.latest(Path(info.path))
        if bench is None:
            missing.append(spec.name)
        else:
            speeds[spec.name] = Speed(bench.prompt_tokens_per_s, bench.decode_tokens_per_s,
                                      bench.load_seconds)
    if missing:
        return None, (f"ETA: once the speed of {', '.join(missing)} is measured at its first "
                      "load on this machine (a few seconds)")
    seconds = math.fsum(seconds for _, seconds in stages_for(speeds, opts).values())
    return seconds, f"predicted duration: about {seconds / 60:.1f} min (from the speed figures cached on this machine)"
