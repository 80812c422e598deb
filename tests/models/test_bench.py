"""`models bench` on a real tiny GGUF, and the figures' store."""

from __future__ import annotations

from pathlib import Path

from gra_local.backends.llama.process import LlamaProcessBackend
from gra_local.core.config import ModelSpec
from gra_local.models.bench import BenchStore, run_bench


def test_bench_measures_and_stores(tmp_path: Path, tiny_gguf: Path) -> None:
    spec = ModelSpec(name="tiny", path=str(tiny_gguf), n_ctx=2048)  # ~1 token per char
    result = run_bench(spec, LlamaProcessBackend(log_dir=tmp_path / "logs"), decode_tokens=16)
    assert result.load_seconds > 0 and result.prompt_tokens_per_s > 0
    assert result.decode_tokens_per_s > 0 and result.n_gpu_layers == 0
    store = BenchStore(tmp_path / "cache")
    assert store.latest(tiny_gguf) is None
    store.save(tiny_gguf, result)
    assert store.latest(tiny_gguf) == result
    tiny_gguf.touch()  # a changed file is measured again
    assert BenchStore(tmp_path / "cache").latest(tiny_gguf) is None


def test_corrupt_store_is_ignored(tmp_path: Path, tiny_gguf: Path) -> None:
    (tmp_path / "bench.json").write_text("{not json")
    assert BenchStore(tmp_path).latest(tiny_gguf) is None
