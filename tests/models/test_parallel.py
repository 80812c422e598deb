"""How many sequences a model decodes together and its shared KV cache, over the planner's
fake facts (a SmolLM2-135M and a 7B-like model on made-up machines)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_planner import SEVEN_B, SMOL, gpu
from test_planner import _hardware as planner_hardware

from gra_local.core.config import MAX_PARALLEL, ModelSpec
from gra_local.core.errors import ModelError
from gra_local.models.fit import gpu_layers_for, plan_for, residency_for
from gra_local.models.gguf_info import read_gguf_info
from gra_local.models.hardware import Hardware
from gra_local.models.parallel import (
    CELL_ROUND,
    DEFAULT_MAX_CPU,
    DEFAULT_MAX_GPU,
    SEQ_CELLS,
    STEADY_STEP,
    choose_parallel,
    kv_cells_for,
    plan_parallel,
)
from gra_local.models.planner import (
    DEFAULT_RESERVE,
    GiB,
    MemoryFacts,
    ModelFacts,
    estimate_memory,
    fits,
    plan_layers,
)


def cpu(ram_gib: float) -> MemoryFacts:
    return gpu(0, ram_gib=ram_gib, backend=None)


def test_kv_cells_hold_one_context_or_a_block_a_sequence_rounded_to_256() -> None:
    assert SEQ_CELLS == 2048 and CELL_ROUND == 256
    assert kv_cells_for(1, 4096) == 4096  # one sequence: the context, as before
    assert 4096 // SEQ_CELLS == 2 and kv_cells_for(2, 4096) == 4096  # two share one context at no extra memory
    assert kv_cells_for(4, 4096) == 4 * SEQ_CELLS == 8192
    assert kv_cells_for(1, 3000) == 3072 and kv_cells_for(1, 2100) == 2304  # rounded up
    assert kv_cells_for(1, 1000) == SEQ_CELLS  # a context below SEQ_CELLS: the block wins
    assert kv_cells_for(3, 2100) == 3 * SEQ_CELLS == 6144
    assert kv_cells_for(64, 4096) == 64 * SEQ_CELLS == 131072
    for n in range(1, 20):
        for n_ctx in (256, 1000, 2048, 3000, 4096):
            cells = kv_cells_for(n, n_ctx)
            assert cells % 256 == 0 and cells >= max(n_ctx, n * SEQ_CELLS) and cells - 256 < max(n_ctx, n * SEQ_CELLS)


def test_estimates_take_the_kv_cells() -> None:
    one, shared = estimate_memory(SEVEN_B, 4096), estimate_memory(SEVEN_B, 4096, kv_cells=16384)
    assert (shared.n_ctx, shared.kv_cells, one.kv_cells) == (4096, 16384, 4096)
    assert shared.kv_bytes == 4 * one.kv_bytes
    assert shared.compute_bytes > one.compute_bytes  # the attention scores span every cell
    assert "at n_ctx 4096, 16384 KV cells" in shared.summary() and "KV cells" not in one.summary()
    assert shared.notes == []  # kv_cells above the trained context is not a context above it
    assert fits(SEVEN_B, 4096, gpu(8)) == "GPU 33/33"
    assert fits(SEVEN_B, 4096, gpu(8), kv_cells=32768).startswith("GPU+CPU")


def test_auto_takes_more_sequences_with_more_free_memory() -> None:
    counts = [choose_parallel(SEVEN_B, 4096, gpu(free)).n_parallel for free in (4, 6, 7, 8, 24)]
    assert counts == sorted(counts) and counts[0] < counts[-1]
    assert counts[-1] == DEFAULT_MAX_GPU
    ram = [choose_parallel(SEVEN_B, 1024, cpu(r)).n_parallel for r in (6.5, 7, 8, 32)]
    assert ram == sorted(ram) and ram[0] < ram[-1] == DEFAULT_MAX_CPU


def test_auto_does_not_flip_on_a_few_mb_of_free_memory_noise() -> None:
    """Free memory is read in STEADY_STEP steps: within a step every figure gives the same
    n_parallel (a rerun gets the same records), though across 4–9 GiB it does change."""
    mib = 2**20
    picks = []
    for step in range(16, 36):
        within = {choose_parallel(SEVEN_B, 4096, gpu((step * STEADY_STEP + d) / GiB)).n_parallel
                  for d in (mib, 5 * mib, 100 * mib, STEADY_STEP - mib)}
        assert len(within) == 1, (step, within)
        picks.append(within.pop())
    assert len(set(picks)) > 3


def test_auto_takes_fewer_sequences_for_a_bigger_model() -> None:
    # 7 GiB free: the 7B gets cells beyond the sequences that share one context, not the cap
    small, big = choose_parallel(SMOL, 4096, gpu(7)), choose_parallel(SEVEN_B, 4096, gpu(7))
    assert small.n_parallel == DEFAULT_MAX_GPU and 4096 // SEQ_CELLS < big.n_parallel < small.n_parallel
    assert big.kv_bytes > small.kv_bytes  # a 7B's cell costs far more than a 135M's


def test_auto_fills_free_vram_without_moving_a_layer_off_the_gpu() -> None:
    mem = gpu(6)
    par = choose_parallel(SEVEN_B, 4096, mem)
    n = par.n_parallel
    assert par.kv_cells == kv_cells_for(n, 4096) and par.kv_bytes == estimate_memory(
        SEVEN_B, 4096, par.kv_cells).kv_bytes
    chosen = plan_layers(SEVEN_B, 4096, mem, kv_cells=par.kv_cells)
    assert chosen.where == "gpu" and chosen.estimate.total_bytes <= 5 * GiB  # 6 GiB free - 1 GiB reserve
    one_more = plan_layers(SEVEN_B, 4096, mem, kv_cells=kv_cells_for(n + 1, 4096))
    assert one_more.where == "split"
    assert par.reason.startswith(f"{n} sequences share {par.kv_cells} KV cells")
    assert "of 6.0 GiB free VRAM (reserve 1.0 GiB)" in par.reason
    assert f"{n + 1} sequences" in par.reason and "would move layers off the GPU" in par.reason


def test_a_split_model_keeps_its_gpu_layers() -> None:
    mem = gpu(4)
    par = choose_parallel(SEVEN_B, 4096, mem)
    assert par.n_parallel == 4096 // SEQ_CELLS == 2 and par.kv_cells == 4096  # only what shares one context
    base = plan_layers(SEVEN_B, 4096, mem)
    assert base.where == "split"
    assert plan_layers(SEVEN_B, 4096, mem, kv_cells=par.kv_cells).n_gpu_layers == base.n_gpu_layers
    assert "would cost GPU layers" in par.reason


def test_caps_and_floor() -> None:
    assert DEFAULT_MAX_CPU < DEFAULT_MAX_GPU <= MAX_PARALLEL == 64
    assert choose_parallel(SMOL, 4096, gpu(24)).n_parallel == DEFAULT_MAX_GPU == 16
    assert choose_parallel(SMOL, 4096, cpu(64)).n_parallel == DEFAULT_MAX_CPU == 8
    assert "the default maximum with a GPU backend" in choose_parallel(SMOL, 4096, gpu(24)).reason
    assert "the default maximum on a CPU build" in choose_parallel(SMOL, 4096, cpu(64)).reason
    # a 64K context already holds 32 blocks of SEQ_CELLS (2048): the cap still applies
    assert choose_parallel(SMOL, 32 * SEQ_CELLS, gpu(24)).n_parallel == 16
    # barely fits alone: no cell beyond one sequence's (at n_ctx 1024 that is SEQ_CELLS), and
    # never fewer than one sequence
    tight = choose_parallel(SEVEN_B, 1024, cpu(5.5))
    assert (tight.n_parallel, tight.kv_cells) == (1, kv_cells_for(1, 1024)) == (1, 2048)
    assert "reserve" in tight.reason
    too_big = choose_parallel(SEVEN_B, 4096, cpu(2))
    assert (too_big.n_parallel, too_big.kv_cells) == (1, 4096) and "does not fit" in too_big.reason


def test_cpu_build_leaves_the_ram_reserve() -> None:
    mem = cpu(8)
    par = choose_parallel(SEVEN_B, 1024, mem)
    assert 1 < par.n_parallel < DEFAULT_MAX_CPU
    assert estimate_memory(SEVEN_B, 1024, par.kv_cells).total_bytes <= 6 * GiB  # 8 - 2 GiB reserve
    assert estimate_memory(SEVEN_B, 1024, kv_cells_for(par.n_parallel + 1, 1024)).total_bytes > 6 * GiB


def test_unknown_vram_adds_no_cells() -> None:
    mem = MemoryFacts(ram_total_bytes=16 * GiB, ram_available_bytes=16 * GiB, gpu_backend="Vulkan")
    par = choose_parallel(SMOL, 4096, mem)
    assert (par.n_parallel, par.kv_cells) == (4096 // SEQ_CELLS, 4096) == (2, 4096)
    assert "free GPU memory is unknown" in par.reason and "free memory unknown" in par.reason


def test_pinned_value_wins() -> None:
    one = choose_parallel(SEVEN_B, 4096, gpu(24), pinned=1)
    assert (one.n_parallel, one.kv_cells, one.pinned) == (1, 4096, True)
    assert one.reason.startswith("pinned in models.toml: 1 sequence uses 4096 KV cells")
    many = choose_parallel(SEVEN_B, 4096, gpu(24), pinned=32)
    assert (many.n_parallel, many.kv_cells) == (32, kv_cells_for(32, 4096)) == (32, 65536)
    # a pinned value may cost GPU layers: said so, not refused
    costly = choose_parallel(SEVEN_B, 4096, gpu(8), pinned=32)
    assert costly.n_parallel == 32 and "costs" in costly.reason and "GPU layer" in costly.reason


def test_pinned_value_that_cannot_fit_is_refused_with_the_numbers() -> None:
    with pytest.raises(ModelError) as info:
        choose_parallel(SEVEN_B, 4096, cpu(8), pinned=64, model="qwen-7b")
    msg = str(info.value)
    assert msg.startswith("model 'qwen-7b': n_parallel = 64 cannot fit")
    assert kv_cells_for(64, 4096) == 131072  # at 128 KiB a cell: 16 GiB
    assert "131072 cells (16.0 GiB)" in msg and "8.0 GiB RAM is available" in msg
    assert "lower n_parallel" in msg and '"auto" picks 5 here' in msg
    assert choose_parallel(SEVEN_B, 4096, cpu(8)).n_parallel == 5
    # a pinned n_gpu_layers that would no longer fit VRAM is refused as well
    with pytest.raises(ModelError, match="n_parallel = 64"):
        choose_parallel(SEVEN_B, 4096, gpu(6), pinned=64, n_gpu_layers=-1)


def _hardware(free_gib: float | None, ram_gib: float = 16, gpu_offload: bool = True) -> Hardware:
    """The planner tests' machine, with a 24 GiB card."""
    return planner_hardware(free_gib, ram_gib, gpu_offload, vram_gib=24)


def test_plan_parallel_for_a_spec(tiny_gguf: Path) -> None:
    info = read_gguf_info(tiny_gguf)
    spec = ModelSpec(name="tiny", path=str(tiny_gguf))
    assert plan_parallel(spec, info, 2048, _hardware(7.0)).n_parallel == 16
    assert plan_parallel(spec, info, 2048, _hardware(None, gpu_offload=False)).n_parallel == 8
    pinned = plan_parallel(spec.model_copy(update={"n_parallel": 3}), info, 2048, _hardware(7.0))
    assert (pinned.n_parallel, pinned.kv_cells, pinned.pinned) == (3, kv_cells_for(3, 2048), True)
    assert pinned.kv_cells == 3 * SEQ_CELLS == 6144
    # a machine where one context fits but 64 sequences' cache does not
    one = estimate_memory(ModelFacts.from_info(info), 2048).total_bytes
    many = estimate_memory(ModelFacts.from_info(info), 2048, kv_cells_for(64, 2048)).total_bytes
    small = _hardware(None, ram_gib=(one + many) / 2 / GiB, gpu_offload=False)
    with pytest.raises(ModelError, match=r"model 'tiny': n_parallel = 64 cannot fit"):
        plan_parallel(spec.model_copy(update={"n_parallel": 64}), info, 2048, small)


def test_layer_plan_fit_and_residency_use_the_larger_cache(tiny_gguf: Path) -> None:
    info = read_gguf_info(tiny_gguf)
    spec = ModelSpec(name="tiny", path=str(tiny_gguf), n_ctx=2048)
    hw = _hardware(7.0)
    par = plan_parallel(spec, info, 2048, hw)
    assert par.n_parallel == 16 and par.kv_cells == kv_cells_for(16, 2048) == 32768
    plan = plan_for(spec, info, hw=hw)
    assert plan.estimate.kv_cells == par.kv_cells and plan.estimate.kv_bytes == par.kv_bytes
    assert plan_for(spec, info, hw=hw, kv_cells=2048).estimate.kv_cells == 2048
    layers, why = gpu_layers_for(spec, info, hw=hw, kv_cells=par.kv_cells)
    assert layers == 2 and f"{par.kv_cells} KV cells" not in why  # the reason shows totals, the cells are in the estimate
    residency = residency_for([(spec, info)], hw)
    assert residency.cost_bytes["tiny"] == plan.gpu_bytes
    assert plan.gpu_bytes > plan_for(spec, info, hw=hw, kv_cells=2048).gpu_bytes
    # a pinned n_parallel that cannot fit stops the plan, naming the model and key
    one = estimate_memory(ModelFacts.from_info(info), 2048).total_bytes
    many = estimate_memory(ModelFacts.from_info(info), 2048, kv_cells_for(64, 2048)).total_bytes
    small = _hardware(None, ram_gib=(one + many) / 2 / GiB, gpu_offload=False)
    with pytest.raises(ModelError, match="'tiny'.*n_parallel"):
        residency_for([(spec.model_copy(update={"n_parallel": 64}), info)], small)


def test_reserve_is_the_planners() -> None:
    # exactly at the edge: the footprint of n sequences equals free VRAM minus the reserve
    n_cells = kv_cells_for(10, 4096)
    edge = estimate_memory(SEVEN_B, 4096, n_cells).total_bytes + DEFAULT_RESERVE
    edge += -edge % STEADY_STEP  # free memory is read in steps: the first that holds it
    mem = MemoryFacts(ram_total_bytes=32 * GiB, ram_available_bytes=32 * GiB, gpu_backend="CUDA",
                      vram_total_bytes=edge, vram_free_bytes=edge, gpu_count=1)
    assert choose_parallel(SEVEN_B, 4096, mem).n_parallel == 10
    less = mem.model_copy(update={"vram_free_bytes": edge - 1})  # a step less
    assert choose_parallel(SEVEN_B, 4096, less).n_parallel == 9
