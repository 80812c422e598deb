"""The planner applied to a registered model on this machine: header + probe -> layers.

``gpu_layers_for`` is what the llama backend calls before starting a worker: it turns a
spec's ``n_gpu_layers`` ("auto" or pinned) into the number to pass to llama.cpp, with the
reason, and refuses a model that cannot fit in RAM + VRAM.  Every plan here is made at the
KV cache the model will really have: ``kv_cells`` of its parallel plan
(``parallel.plan_parallel``), unless the caller passes the one it already chose.
"""

from __future__ import annotations

from collections.abc import Sequence

from gra_local.core.config import ModelSpec
from gra_local.core.engine.model_pool import Residency
from gra_local.core.errors import ModelError
from gra_local.models.gguf_info import GGUFInfo
from gra_local.models.hardware import Hardware, probe
from gra_local.models.parallel import plan_parallel
from gra_local.models.planner import DEFAULT_RESERVE, RAM_RESERVE, LayerPlan, ModelFacts, plan_layers

DEFAULT_N_CTX = 4096


def model_facts(info: GGUFInfo) -> ModelFacts:
    return ModelFacts.from_info(info, n_vocab=info.vocab_size)


def context_for(spec: ModelSpec, info: GGUFInfo) -> int:
    """The context the backend loads with: the spec's, else min(4096, trained)."""
    if spec.n_ctx is not None:
        return spec.n_ctx
    return min(DEFAULT_N_CTX, info.context_length or DEFAULT_N_CTX)


def check_context(spec: ModelSpec, info: GGUFInfo) -> None:
    """A context above the trained one is refused: llama.cpp would run it and degrade."""
    if spec.n_ctx is not None and info.context_length and spec.n_ctx > info.context_length:
        raise ModelError(f"model {spec.name!r}: n_ctx {spec.n_ctx} is above its trained context "
                         f"{info.context_length}; set n_ctx to {info.context_length} or less")


def plan_for(spec: ModelSpec, info: GGUFInfo, n_ctx: int | None = None,
             hw: Hardware | None = None, kv_cells: int | None = None) -> LayerPlan:
    """The layer plan at the spec's context and the KV cache of its parallel plan
    (``kv_cells`` when given, else ``plan_parallel``'s, which may raise ModelError for a
    pinned n_parallel that cannot fit)."""
    hw = hw if hw is not None else probe()
    n_ctx = n_ctx or context_for(spec, info)
    if kv_cells is None:
        kv_cells = plan_parallel(spec, info, n_ctx, hw).kv_cells
    return plan_layers(model_facts(info), n_ctx, hw.memory_facts(), pinned=spec.n_gpu_layers,
                       kv_cells=kv_cells)


def gpu_layers_for(spec: ModelSpec, info: GGUFInfo, n_ctx: int | None = None,
                   hw: Hardware | None = None, kv_cells: int | None = None) -> tuple[int, str]:
    """(n_gpu_layers to pass to llama.cpp, the reason with the numbers), planned at
    ``kv_cells`` (pass the ``plan_parallel`` result the context is loaded with, from the
    same probe; default: that plan, made here).

    Raises ModelError when the model would not fit in RAM + free VRAM (loading it would
    swap the machine); the message carries the numbers and the fix."""
    plan = plan_for(spec, info, n_ctx, hw, kv_cells)
    if plan.where == "wont_fit":
        raise ModelError(f"model {spec.name!r}: {plan.reason}")
    return plan.n_gpu_layers, plan.reason


def residency_for(models: list[tuple[ModelSpec, GGUFInfo]], hw: Hardware | None = None,
                  endpoints: Sequence[str] = ()) -> Residency:
    """How many models may stay loaded together: each model's planned footprint against
    free VRAM (GPU builds with known VRAM) or available RAM (CPU, unified memory). An
    endpoint model (`endpoints`: their names) costs nothing here: its server holds it."""
    hw = hw if hw is not None else probe()
    mem = hw.memory_facts()
    on_gpu = bool(mem.gpu_backend) and mem.vram_free_bytes is not None and not mem.unified
    costs: dict[str, int] = dict.fromkeys(endpoints, 0)
    for spec, info in models:
        plan = plan_for(spec, info, hw=hw)
        costs[spec.name] = plan.gpu_bytes if on_gpu and plan.gpu_bytes else plan.estimate.total_bytes
    if on_gpu:
        budget = max(0, (mem.vram_free_bytes or 0) - DEFAULT_RESERVE)
    else:
        budget = max(0, mem.ram_available_bytes - RAM_RESERVE)
        if mem.unified and mem.vram_free_bytes is not None:
            budget = min(budget, mem.vram_free_bytes)
    return Residency(budget_bytes=budget, cost_bytes=costs)
