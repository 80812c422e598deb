"""How many sequences one model decodes together, and how large their shared KV cache is.

The llama.cpp worker decodes up to ``n_parallel`` sequences in one context whose KV cache
of ``kv_cells`` cells is *unified*: every sequence draws cells from one pool (a prompt
prefix common to several is stored once) and any one of them may grow to the
per-sequence context n_ctx.  The rule, kept simple:

* **A sequence needs about ``SEQ_CELLS`` = 2048 cells.**  The decoder admits a request
  only when its prompt (minus a prefix it shares) *plus its whole token budget* fits in
  the free cells, so the cache never overflows mid-reply. The stages send prompts of a few
  hundred to ~1000 tokens with budgets that bound the grammar's worst case (scores about
  500 tokens, a draft instruction about 1600, free answers 512 by default): 1024 cells a
  sequence let only half the planned sequences in at once for drafts, 2048 let them all.
  It is an average, not a limit: one sequence may still use all of n_ctx.
* **The cache has ``kv_cells = max(n_ctx, n_parallel × SEQ_CELLS)`` cells**, rounded up
  to a multiple of 256: never smaller than one full context (so a single long sequence
  still fits, as before), and at the default n_ctx of 4096 two sequences share what one
  used to hold, at no extra memory.
* **"auto" takes as many sequences as fit** the memory left after the model's weights
  and compute buffer: the largest n up to the cap whose whole footprint (weights + KV
  cache of kv_cells(n) + compute buffer, whose attention scores also grow with the cells
  when flash attention is off, so an upper bound; ``planner.estimate_memory``) still gets
  the same layer plan as one sequence:
  a model that sits entirely in VRAM stays there (free VRAM minus the planner's 1 GiB
  reserve), a split model keeps its GPU layers, and what lands in RAM leaves
  ``RAM_RESERVE`` (2 GiB) to the OS, as residency does.  Parallel sequences never push a
  layer off the GPU nor the machine into swap; where free VRAM is unknown (Vulkan on AMD)
  no cells are added beyond n_ctx. Sequences beyond the first are judged on free memory
  read in steps of 256 MiB (``STEADY_STEP``), so that a rerun gets the same n_parallel,
  hence the same records.
* **Caps:** at most 8 on a CPU build (batching gains flatten out there once the matrix
  products turn compute-bound) and 16 with a GPU backend; at least 1.  A pinned
  ``n_parallel`` (1–64) wins, but one whose KV cache cannot fit at all (the layer plan
  says "won't fit" or "may NOT fit" where one sequence fits) is refused with the
  numbers; a pinned value may cost GPU layers, which its reason says.

Every estimate the rest of the app makes (``fit.plan_for``: the layer plan, the fit
badge, residency) is taken at the plan's ``kv_cells``, so they stay honest about the
larger cache.  Each model is planned as if alone on the machine: with several models, a
larger cache each can mean fewer of them stay loaded side by side (residency counts it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from gra_local.core.config import ModelSpec
from gra_local.core.errors import ModelError
from gra_local.models.gguf_info import GGUFInfo
from gra_local.models.hardware import Hardware, probe
from gra_local.models.planner import (
    DEFAULT_RESERVE,
    RAM_RESERVE,
    LayerPlan,
    MemoryFacts,
    ModelFacts,
    gib,
    plan_layers,
)

SEQ_CELLS = 2048
"""KV cells one sequence needs on average: a typical prompt plus its whole token budget."""
CELL_ROUND = 256
"""kv_cells is a multiple of this (llama.cpp pads the cache to 256 cells anyway)."""
DEFAULT_MAX_CPU = 8
"""Most sequences "auto" gives a model on a llama.cpp build without a GPU backend."""
DEFAULT_MAX_GPU = 16
"""Most sequences "auto" gives a model when llama.cpp has a GPU backend."""


class ParallelPlan(BaseModel):
    n_parallel: int
    """Sequences decoded together."""
    kv_cells: int
    """Cells of the unified KV cache shared by them (load the context with this many)."""
    kv_bytes: int
    """Memory of that KV cache (f16)."""
    reason: str
    """Why, with the numbers."""
    n_ctx: int
    """Context one sequence may use."""
    pinned: bool = False


def kv_cells_for(n_parallel: int, n_ctx: int) -> int:
    """max(n_ctx, n_parallel × SEQ_CELLS), rounded up to a multiple of CELL_ROUND."""
    cells = max(n_ctx, n_parallel * SEQ_CELLS)
    return -(-cells // CELL_ROUND) * CELL_ROUND


def default_max(mem: MemoryFacts) -> int:
    return DEFAULT_MAX_GPU if mem.gpu_backend else DEFAULT_MAX_CPU


def _cells_text(n: int, cells: int, plan: LayerPlan, n_ctx: int) -> str:
    seqs = "1 sequence uses" if n == 1 else f"{n} sequences share"
    return (f"{seqs} {cells} KV cells ({gib(plan.estimate.kv_bytes)}; about {SEQ_CELLS} "
            f"a sequence, up to n_ctx {n_ctx} each)")


def _placement_text(plan: LayerPlan, mem: MemoryFacts, reserve_bytes: int) -> str:
    total = gib(plan.estimate.total_bytes)
    if plan.where == "gpu" and mem.vram_free_bytes is None:
        return f"all layers on GPU ({mem.gpu_backend}, free memory unknown); the model needs {total}"
    if plan.where == "gpu":
        return (f"the model needs {total} of {gib(mem.vram_free_bytes)} free VRAM "
                f"(reserve {gib(reserve_bytes)})")
    if plan.where == "split":
        return (f"{plan.n_gpu_layers} of {plan.max_layers} layers on GPU, {gib(plan.cpu_bytes)} in RAM "
                f"of {gib(mem.ram_available_bytes)} available; the model needs {total}")
    return f"the model needs {total} of {gib(mem.ram_available_bytes)} available RAM"


STEADY_STEP = 256 * 2**20
"""Free RAM and VRAM are rounded down to this step before "auto" adds a sequence (one
sequence is planned on the figures as read): the same command on an idle machine then
gets the same n_parallel (and so the same records) whatever a few MB of free-memory noise
say, unless free memory crosses a step."""


def steady(mem: MemoryFacts) -> MemoryFacts:
    """`mem` with its free-memory figures rounded down to STEADY_STEP."""
    def down(x: int | None) -> int | None:
        return None if x is None else x - x % STEADY_STEP
    return mem.model_copy(update={"ram_available_bytes": down(mem.ram_available_bytes),
                                  "vram_free_bytes": down(mem.vram_free_bytes)})


def choose_parallel(
    facts: ModelFacts,
    n_ctx: int,
    mem: MemoryFacts,
    pinned: int | Literal["auto"] = "auto",
    n_gpu_layers: int | Literal["auto"] = "auto",
    model: str = "model",
    reserve_bytes: int = DEFAULT_RESERVE,
    ram_reserve_bytes: int = RAM_RESERVE,
) -> ParallelPlan:
    """The rule of this module over plain facts (pure; ``plan_parallel`` for a spec).

    Raises ModelError naming ``model`` and the key when a pinned value cannot fit."""
    def layers(cells: int, at: MemoryFacts = mem) -> LayerPlan:
        return plan_layers(facts, n_ctx, at, n_gpu_layers, reserve_bytes, kv_cells=cells)

    base_cells = kv_cells_for(1, n_ctx)
    base = layers(base_cells)

    def result(n: int, cells: int, plan: LayerPlan, reason: str, is_pinned: bool = False) -> ParallelPlan:
        return ParallelPlan(n_parallel=n, kv_cells=cells, kv_bytes=plan.estimate.kv_bytes,
                            reason=reason, n_ctx=n_ctx, pinned=is_pinned)

    if pinned != "auto":
        cells = kv_cells_for(pinned, n_ctx)
        plan = layers(cells)
        if cells > base_cells and base.where != "wont_fit" and (
                plan.where == "wont_fit" or (base.fits and not plan.fits)):
            auto = choose_parallel(facts, n_ctx, mem, "auto", n_gpu_layers, model, reserve_bytes,
                                   ram_reserve_bytes)
            raise ModelError(
                f"model {model!r}: n_parallel = {pinned} cannot fit: {pinned} sequences need a KV "
                f"cache of {cells} cells ({gib(plan.estimate.kv_bytes)}); with it the plan is "
                f"{plan.reason}; "
                f"lower n_parallel (\"auto\" picks {auto.n_parallel} here)")
        text = f"pinned in models.toml: {_cells_text(pinned, cells, plan, n_ctx)}"
        lost = base.n_gpu_layers - plan.n_gpu_layers
        if plan.n_gpu_layers >= 0 and lost > 0:
            text += f"; this costs {lost} GPU layer(s) against one sequence"
        return result(pinned, cells, plan, f"{text}; {_placement_text(plan, mem, reserve_bytes)}", True)

    cap = default_max(mem)
    capped = (f"the default maximum {'with a GPU backend' if mem.gpu_backend else 'on a CPU build'}; "
              "pin n_parallel in models.toml for more")
    if base.where == "wont_fit":
        return result(1, base_cells, base, "1 sequence: the model does not fit even alone (see the GPU plan)")
    unknown_vram = bool(mem.gpu_backend) and mem.vram_free_bytes is None
    grid = steady(mem)  # more sequences are judged on free memory read in steps
    ram_budget = grid.ram_available_bytes - ram_reserve_bytes

    def why_not(plan: LayerPlan) -> str | None:
        """None when this plan is as good as one sequence's; else what it would cost."""
        if plan.where == "wont_fit" or (base.fits and not plan.fits):
            return f"would not fit ({plan.reason})"
        if plan.n_gpu_layers != base.n_gpu_layers or plan.where != base.where:
            if base.where == "gpu":
                return (f"would move layers off the GPU (the model would need "
                        f"{gib(plan.estimate.total_bytes)} of {gib(mem.vram_free_bytes)} free VRAM, "
                        f"reserve {gib(reserve_bytes)})")
            return (f"would cost GPU layers ({base.n_gpu_layers} → {plan.n_gpu_layers} of "
                    f"{plan.max_layers} on GPU)")
        in_ram = plan.cpu_bytes + (plan.gpu_bytes if mem.unified else 0)
        if in_ram > ram_budget:
            return (f"would need {gib(in_ram)} of RAM, more than the {gib(mem.ram_available_bytes)} "
                    f"available minus a {gib(ram_reserve_bytes)} reserve")
        return None

    n, cells, plan = 1, base_cells, base
    stop = capped
    for m in range(2, cap + 1):
        m_cells = kv_cells_for(m, n_ctx)
        m_plan = base if m_cells <= base_cells else layers(m_cells, grid)
        if m_cells > base_cells:
            if unknown_vram:
                stop = (f"free GPU memory is unknown, so no KV cells are added beyond n_ctx {n_ctx}; "
                        "pin n_parallel in models.toml for more")
                break
            problem = why_not(m_plan)
            if problem:
                stop = f"{m} sequences ({m_cells} cells, {gib(m_plan.estimate.kv_bytes)} KV) {problem}"
                break
        n, cells, plan = m, m_cells, m_plan
    return result(n, cells, plan, f"{_cells_text(n, cells, plan, n_ctx)}; "
                                  f"{_placement_text(plan, mem, reserve_bytes)}; {stop}")


def plan_parallel(spec: ModelSpec, info: GGUFInfo, n_ctx: int, hw: Hardware | None = None) -> ParallelPlan:
    """n_parallel and kv_cells for ``spec`` at context ``n_ctx`` on this machine (probed when
    ``hw`` is None). Raises ModelError naming the model and n_parallel when a pinned value's
    KV cache cannot fit."""
    hw = hw if hw is not None else probe()
    return choose_parallel(ModelFacts.from_info(info, n_vocab=info.vocab_size), n_ctx, hw.memory_facts(),
                           pinned=spec.n_parallel, n_gpu_layers=spec.n_gpu_layers, model=spec.name)
