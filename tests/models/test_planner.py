"""The memory estimate and the layer planner as pure functions over (model, machine) facts."""

from __future__ import annotations

from pathlib import Path

import pytest
from ggufs import write_tiny_gguf

from gra_local.core.config import ModelSpec
from gra_local.core.errors import ModelError
from gra_local.models.fit import gpu_layers_for, model_facts
from gra_local.models.gguf_info import read_gguf_info
from gra_local.models.hardware import GPU, Hardware, LlamaBuild
from gra_local.models.planner import (
    GiB,
    MemoryFacts,
    MiB,
    ModelFacts,
    badge,
    estimate_memory,
    fits,
    kv_cache_bytes,
    plan_layers,
)

# a 7B-like model: 32 blocks, Q4 (~4 GiB), GQA 32/8 heads
SEVEN_B = ModelFacts(architecture="llama", file_type="Q4_K_M", weights_bytes=4 * GiB, n_layers=32,
                     n_ctx_train=8192, n_embd=4096, n_head=32, n_head_kv=8, n_vocab=32000)
SMOL = ModelFacts(architecture="llama", file_type="Q4_1", weights_bytes=98_362_432, n_layers=30,
                  n_ctx_train=8192, n_embd=576, n_head=9, n_head_kv=3, n_vocab=49152)


def gpu(free_gib: float, ram_gib: float = 32, backend: str | None = "CUDA") -> MemoryFacts:
    return MemoryFacts(ram_total_bytes=int(ram_gib * GiB), ram_available_bytes=int(ram_gib * GiB),
                       gpu_backend=backend, vram_total_bytes=int(max(free_gib, 1) * GiB),
                       vram_free_bytes=int(free_gib * GiB), gpu_count=1)


def test_kv_cache_formula_by_hand() -> None:
    # SmolLM2-135M at 2048: 2 (K,V) x 30 layers x 2048 cells x 3 KV heads x 64 dims x 2 B
    assert kv_cache_bytes(30, 2048, 3, 64) == 2 * 30 * 2048 * 3 * 64 * 2 == 45 * MiB
    assert estimate_memory(SMOL, 2048).kv_bytes == 45 * MiB  # what llama.cpp prints
    # 7B GQA at 4096: head_dim 128, 8 KV heads -> 512 MiB
    assert estimate_memory(SEVEN_B, 4096).kv_bytes == 2 * 32 * 4096 * 8 * 128 * 2 == 512 * MiB


def test_estimate_parts_add_up_and_scale_with_context() -> None:
    a, b = estimate_memory(SEVEN_B, 2048), estimate_memory(SEVEN_B, 8192)
    assert a.total_bytes == a.weights_bytes + a.kv_bytes + a.compute_bytes
    assert b.kv_bytes == 4 * a.kv_bytes
    assert b.compute_bytes > a.compute_bytes  # attention scores outgrow the logits at 8192
    assert a.notes == []


def test_estimate_with_missing_header_fields_says_so() -> None:
    bare = ModelFacts(weights_bytes=100 * MiB)
    est = estimate_memory(bare, 4096)
    assert est.kv_bytes == 0 and est.total_bytes > 100 * MiB
    assert any("KV cache not estimated" in n for n in est.notes)
    assert any("vocabulary size unknown" in n for n in est.notes)


def test_no_gpu_backend_runs_on_cpu() -> None:
    plan = plan_layers(SEVEN_B, 4096, gpu(0, backend=None))
    assert (plan.where, plan.n_gpu_layers, plan.fits) == ("cpu", 0, True)
    assert "CPU only" in plan.reason and "available RAM" in plan.reason


def test_big_vram_puts_all_layers_on_gpu() -> None:
    plan = plan_layers(SMOL, 4096, gpu(7.6))
    assert (plan.where, plan.n_gpu_layers, plan.max_layers) == ("gpu", 31, 31)
    assert plan.reason.startswith("all 31 layers on GPU (CUDA): needs 284 MiB of 7.6 GiB free VRAM")
    assert "reserve 1.0 GiB" in plan.reason
    assert fits(SMOL, 4096, gpu(7.6)) == "GPU 31/31"


def test_partial_fit_splits_with_the_right_count() -> None:
    est = estimate_memory(SEVEN_B, 4096)
    plan = plan_layers(SEVEN_B, 4096, gpu(4.0), reserve_bytes=GiB)
    expected = (3 * GiB - est.compute_bytes) // est.layer_bytes
    assert plan.where == "split" and plan.n_gpu_layers == expected
    assert 0 < expected < 32
    assert plan.gpu_bytes <= 3 * GiB
    assert plan.gpu_bytes + est.layer_bytes > 3 * GiB  # one more layer would not fit
    assert f"{expected} of 33 layers on GPU (CUDA), {33 - expected} on CPU" in plan.reason
    assert badge(plan) == f"GPU+CPU {expected}/33"


def test_gpu_too_small_for_one_layer_runs_on_cpu() -> None:
    plan = plan_layers(SEVEN_B, 4096, gpu(1.2))
    assert plan.where == "cpu" and plan.n_gpu_layers == 0
    assert "holds no layer" in plan.reason


def test_pinned_value_wins_and_reports_fit() -> None:
    plan = plan_layers(SEVEN_B, 4096, gpu(24), pinned=10)
    assert (plan.n_gpu_layers, plan.where, plan.pinned, plan.fits) == (10, "split", True, True)
    assert plan.reason.startswith("pinned in models.toml: 10 of 33 layers")
    too_many = plan_layers(SEVEN_B, 4096, gpu(2.0), pinned=-1)
    assert too_many.n_gpu_layers == -1 and too_many.where == "gpu" and not too_many.fits
    assert "may NOT fit" in too_many.reason and badge(too_many).endswith("(may not fit)")
    unknown_layers = SEVEN_B.model_copy(update={"n_layers": None})
    all_pinned = plan_layers(unknown_layers, 4096, gpu(24), pinned=-1)
    assert (all_pinned.n_gpu_layers, all_pinned.where, all_pinned.fits) == (-1, "gpu", True)
    assert all_pinned.gpu_bytes == all_pinned.estimate.total_bytes
    no_backend = plan_layers(SEVEN_B, 4096, gpu(0, backend=None), pinned=20)
    assert no_backend.where == "cpu" and "no GPU backend" in no_backend.reason
    assert (no_backend.n_gpu_layers, no_backend.gpu_bytes) == (20, 0)


def test_larger_than_ram_plus_vram_is_refused_with_numbers() -> None:
    plan = plan_layers(SEVEN_B, 4096, gpu(1.5, ram_gib=2))
    assert plan.where == "wont_fit" and not plan.fits and plan.n_gpu_layers == 0
    assert "won't fit: needs 4.8 GiB (weights 4.0 GiB + KV cache 512 MiB" in plan.reason
    assert "2.0 GiB RAM is available" in plan.reason and "refusing" in plan.reason
    assert fits(SEVEN_B, 4096, gpu(0, ram_gib=2, backend=None)) == "won't fit"
    # a pinned value does not override the refusal
    assert plan_layers(SEVEN_B, 4096, gpu(1.5, ram_gib=2), pinned=0).where == "wont_fit"


def test_context_is_never_shrunk() -> None:
    plan = plan_layers(SEVEN_B, 32768, gpu(0, ram_gib=6, backend=None))
    assert plan.estimate.n_ctx == 32768
    assert plan.where == "wont_fit" and "n_ctx" in plan.reason
    assert any("above the trained context 8192" in n for n in plan.estimate.notes)


def test_unknown_vram_offloads_everything_and_says_so() -> None:
    hw = MemoryFacts(ram_total_bytes=16 * GiB, ram_available_bytes=16 * GiB, gpu_backend="Vulkan")
    plan = plan_layers(SEVEN_B, 4096, hw)
    assert plan.where == "gpu" and plan.n_gpu_layers == 33 and "free memory unknown" in plan.reason


def test_unified_memory_does_not_count_twice() -> None:
    ram = 16 * GiB  # GPU working set 2/3: 10.7 GiB
    hw = MemoryFacts(ram_total_bytes=ram, ram_available_bytes=ram, gpu_backend="Metal",
                     vram_total_bytes=ram * 2 // 3, vram_free_bytes=ram * 2 // 3, unified=True)
    assert plan_layers(SEVEN_B, 4096, hw).where == "gpu"
    hw_small = hw.model_copy(update={"ram_available_bytes": 4 * GiB})
    assert plan_layers(SEVEN_B, 4096, hw_small).where == "wont_fit"


def _hardware(free_gib: float | None, ram_gib: float = 16, gpu_offload: bool = True,
              vram_gib: float = 8) -> Hardware:
    gpus = [] if free_gib is None else [GPU(name="RTX", kind="nvidia", memory_total_bytes=int(vram_gib * GiB),
                                            memory_free_bytes=int(free_gib * GiB))]
    return Hardware(system="Linux", machine="x86_64", cpu_logical=8, ram_total_bytes=int(ram_gib * GiB),
                    ram_available_bytes=int(ram_gib * GiB), gpus=gpus,
                    llama=LlamaBuild(version="0.3.36", gpu_offload=gpu_offload,
                                     backend="CUDA" if gpu_offload else "CPU"))


def test_gpu_layers_for_a_spec(tiny_gguf: Path) -> None:
    info = read_gguf_info(tiny_gguf)
    spec = ModelSpec(name="tiny", path=str(tiny_gguf), n_ctx=4096)
    layers, why = gpu_layers_for(spec, info, hw=_hardware(7.0))
    assert layers == 2 and why.startswith("all 2 layers on GPU (CUDA)")  # 1 block + output
    assert gpu_layers_for(spec, info, hw=_hardware(None, gpu_offload=False))[0] == 0
    pinned = spec.model_copy(update={"n_gpu_layers": 1})
    assert gpu_layers_for(pinned, info, hw=_hardware(7.0))[0] == 1
    with pytest.raises(ModelError, match="tiny.*won't fit.*refusing"):
        gpu_layers_for(spec, info, hw=_hardware(None, ram_gib=0.001, gpu_offload=False))


def test_vocab_size_is_read_from_the_header(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "t.gguf")
    assert read_gguf_info(path).vocab_size == 356
    assert model_facts(read_gguf_info(path)).n_vocab == 356


# llama.cpp's own figures for SmolLM2-135M Q4_1 (verbose load log, CPU build 0.3.36):
# model buffer 92.10 MiB, KV 45.00 / 90.00 MiB, compute 99.38 MiB, output 0.19 MiB
MEASURED_MIB = {2048: 92.10 + 45.00 + 99.38 + 0.19, 4096: 92.10 + 90.00 + 99.38 + 0.19}


@pytest.mark.parametrize("n_ctx", sorted(MEASURED_MIB))
def test_estimate_matches_llama_cpp_on_the_real_model(smol_model: Path, n_ctx: int) -> None:
    facts = model_facts(read_gguf_info(smol_model))
    assert facts.n_vocab == 49152
    est = estimate_memory(facts, n_ctx)
    assert est.kv_bytes == (45 if n_ctx == 2048 else 90) * MiB
    assert est.total_bytes / MiB == pytest.approx(MEASURED_MIB[n_ctx], rel=0.25)
    assert est.total_bytes / MiB == pytest.approx(MEASURED_MIB[n_ctx], rel=0.03)  # as calibrated
