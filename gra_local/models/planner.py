"""How much memory a GGUF needs and where its layers go: pure functions, no I/O.

``estimate_memory`` turns header facts into weights + KV cache + compute buffers;
``plan_layers`` turns that and the machine's memory facts into ``n_gpu_layers`` with a
reason that shows the numbers.  Context is never shrunk here: when a model does not fit,
the plan says so (``wont_fit``) and names the fix.

Calibration (llama-cpp-python 0.3.36, CPU build, defaults n_batch = n_ubatch = 512,
flash_attn off, f16 KV cache), SmolLM2-135M-Instruct Q4_1 (30 blocks, n_embd 576,
9 heads, 3 KV heads, vocab 49152, file 93.80 MiB), from llama.cpp's verbose load log:

    n_ctx  model buffer  KV cache   compute buffer  output buffer   total
    2048   92.10 MiB     45.00 MiB  99.38 MiB       0.19 MiB        236.7 MiB
    4096   92.10 MiB     90.00 MiB  99.38 MiB       0.19 MiB        281.7 MiB
    estimate (this module):
    2048   93.80 MiB     45.00 MiB  100.69 MiB (incl. output)       239.5 MiB  (+1.2 %)
    4096   93.80 MiB     90.00 MiB  100.69 MiB                      284.5 MiB  (+1.0 %)

The compute buffer is the largest intermediate of a 512-token batch: the logits
(n_ubatch x n_vocab f32 = 96 MiB here) or, at long contexts, the attention scores
(n_ubatch x n_head x n_ctx f32, 72 MiB at 4096 here, so the logits still dominate).

With parallel sequences (``models/parallel.py``) the KV cache holds ``kv_cells`` cells
shared by all of them, more than one sequence's n_ctx; the KV cache and the attention
scores (which span every cell in use) are then sized by ``kv_cells``: every estimate
below takes it, and n_ctx stays the context one sequence may use.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

MiB = 1 << 20
GiB = 1 << 30
N_UBATCH = 512
"""llama-cpp-python's default n_ubatch (the worker does not change it)."""
DEFAULT_N_VOCAB = 32_000
"""Assumed when the header's vocabulary size is unknown (stated in the estimate's notes)."""
DEFAULT_RESERVE = 1 * GiB
"""VRAM kept free: the CUDA context of each worker process (~0.3-0.5 GiB), the
driver, the desktop and other processes' growth."""
RAM_RESERVE = 2 * GiB
"""RAM left for the OS, the app and the page cache when models are kept loaded side by
side or given a larger KV cache."""


class ModelFacts(BaseModel):
    """What the planner needs from a GGUF header."""

    name: str | None = None
    architecture: str = "unknown"
    file_type: str = "unknown"
    weights_bytes: int = Field(ge=0)
    n_layers: int | None = None
    n_ctx_train: int | None = None
    n_embd: int | None = None
    n_head: int | None = None
    n_head_kv: int | None = None
    n_vocab: int | None = None

    @classmethod
    def from_info(cls, info: Any, n_vocab: int | None = None) -> ModelFacts:
        """From a ``GGUFInfo`` (weights ≈ file size); ``n_vocab`` if read separately."""
        return cls(
            name=info.name,
            architecture=info.architecture,
            file_type=info.file_type,
            weights_bytes=info.size_bytes,
            n_layers=info.block_count,
            n_ctx_train=info.context_length,
            n_embd=info.embedding_length,
            n_head=info.head_count,
            n_head_kv=info.head_count_kv,
            n_vocab=n_vocab if n_vocab is not None else getattr(info, "vocab_size", None),
        )


class MemoryFacts(BaseModel):
    """What the planner needs from the machine (built by ``hardware.Hardware.memory_facts``)."""

    ram_total_bytes: int = 0
    ram_available_bytes: int = 0
    gpu_backend: str | None = None
    """llama.cpp's GPU backend ("CUDA", "Metal", "Vulkan", …), None when it has none."""
    no_gpu_reason: str = "this llama.cpp build has no GPU backend"
    vram_total_bytes: int | None = None
    vram_free_bytes: int | None = None
    """None: the backend offloads but its free memory is unknown (e.g. Vulkan on AMD)."""
    unified: bool = False
    """GPU and CPU share RAM (Apple Silicon): the VRAM figures are part of the RAM."""
    gpu_count: int = 0


class MemoryEstimate(BaseModel):
    n_ctx: int
    """Context one sequence may use."""
    kv_cells: int
    """Cells of the KV cache: n_ctx, or more when parallel sequences share it."""
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    total_bytes: int
    layer_bytes: int
    """Weights + KV cache of one repeating block (what one offloaded layer costs)."""
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        cells = f", {self.kv_cells} KV cells" if self.kv_cells != self.n_ctx else ""
        return (f"{gib(self.total_bytes)} (weights {gib(self.weights_bytes)} + KV cache "
                f"{gib(self.kv_bytes)} + compute {gib(self.compute_bytes)} at n_ctx {self.n_ctx}{cells})")


Where = Literal["gpu", "split", "cpu", "wont_fit"]


class LayerPlan(BaseModel):
    n_gpu_layers: int
    """What to pass to llama.cpp (-1 = all, when the layer count is unknown)."""
    max_layers: int
    """block_count + 1 (the output layer); 0 when the header has no block count."""
    where: Where
    fits: bool
    pinned: bool = False
    gpu_bytes: int = 0
    cpu_bytes: int = 0
    reason: str
    estimate: MemoryEstimate


def gib(n: int | float | None) -> str:
    """Bytes for people: "237 MiB", "7.6 GiB"."""
    if n is None:
        return "unknown"
    if abs(n) < GiB:
        return f"{n / MiB:.0f} MiB"
    return f"{n / GiB:.1f} GiB"


def kv_cache_bytes(n_layers: int, n_ctx: int, n_head_kv: int, head_dim: int, bytes_per: int = 2) -> int:
    """K and V, f16: 2 x n_layers x n_ctx x n_head_kv x head_dim x 2 bytes."""
    return 2 * n_layers * n_ctx * n_head_kv * head_dim * bytes_per


def estimate_memory(facts: ModelFacts, n_ctx: int, kv_cells: int | None = None) -> MemoryEstimate:
    """Weights ≈ file size; KV cache f16 of ``kv_cells`` cells (default n_ctx; standard
    attention, no sliding window); compute = 4 B x n_ubatch x (max(n_vocab, n_head x
    kv_cells) + 4 x n_embd) + the output buffer (n_vocab x 4 B).  Approximate for
    architectures with other KV shapes (MLA, sliding-window, recurrent state)."""
    notes: list[str] = []
    cells = kv_cells if kv_cells is not None else n_ctx
    n_layers = facts.n_layers
    n_embd = facts.n_embd
    n_head = facts.n_head
    n_head_kv = facts.n_head_kv or n_head
    kv = 0
    if n_layers and n_embd:
        if n_head and n_head_kv:
            kv = kv_cache_bytes(n_layers, cells, n_head_kv, n_embd // n_head)
        else:  # no head counts: assume no grouped-query attention (an upper bound)
            kv = kv_cache_bytes(n_layers, cells, 1, n_embd)
            notes.append("no attention head counts in the header: KV cache assumes n_head_kv = n_head")
    else:
        notes.append("no block count or embedding size in the header: KV cache not estimated")
    n_vocab = facts.n_vocab
    if not n_vocab:
        n_vocab = DEFAULT_N_VOCAB
        notes.append(f"vocabulary size unknown: compute buffer assumes {DEFAULT_N_VOCAB} tokens")
    widest = max(n_vocab, (n_head or 0) * cells)
    compute = 4 * N_UBATCH * (widest + 4 * (n_embd or 0)) + 4 * n_vocab
    layer = (facts.weights_bytes + kv) // n_layers if n_layers else facts.weights_bytes + kv
    if facts.n_ctx_train and n_ctx > facts.n_ctx_train:
        notes.append(f"n_ctx {n_ctx} is above the trained context {facts.n_ctx_train}")
    return MemoryEstimate(
        n_ctx=n_ctx, kv_cells=cells, weights_bytes=facts.weights_bytes, kv_bytes=kv, compute_bytes=compute,
        total_bytes=facts.weights_bytes + kv + compute, layer_bytes=layer, notes=notes,
    )


def _gpu_budget(hw: MemoryFacts, reserve: int) -> int | None:
    """VRAM the model may use; None when unknown."""
    if hw.vram_free_bytes is None:
        return None
    free = hw.vram_free_bytes
    if hw.unified:
        free = min(free, hw.ram_available_bytes)
    return max(0, free - reserve)


def _vram_text(hw: MemoryFacts, reserve: int) -> str:
    return f"{gib(hw.vram_free_bytes)} free VRAM (reserve {gib(reserve)})"


def _placement(facts: ModelFacts, est: MemoryEstimate, k: int, max_layers: int) -> tuple[int, int]:
    """(GPU bytes, CPU bytes) with k layers offloaded; the compute buffer counts on both
    sides when split (llama.cpp keeps one per device in use)."""
    if k == 0:
        return 0, est.total_bytes
    if k < 0 or not facts.n_layers or k >= max_layers:
        return est.total_bytes, est.compute_bytes
    on_gpu = k * est.layer_bytes + est.compute_bytes
    return on_gpu, est.total_bytes - k * est.layer_bytes


def _where(k: int, max_layers: int, unknown_layers: bool) -> Where:
    if k == 0:
        return "cpu"
    if k < 0 or unknown_layers or k >= max_layers:
        return "gpu"
    return "split"


def plan_layers(
    facts: ModelFacts,
    n_ctx: int,
    hw: MemoryFacts,
    pinned: int | Literal["auto"] = "auto",
    reserve_bytes: int = DEFAULT_RESERVE,
    kv_cells: int | None = None,
) -> LayerPlan:
    """Choose n_gpu_layers. A pinned int wins (its fit is still reported); no GPU backend
    → CPU; all layers when they fit in free VRAM minus the reserve; else as many layers
    as fit with the rest in RAM; more than RAM + VRAM → ``wont_fit`` (never swap).
    ``kv_cells``: the KV cache's size when parallel sequences share it (default n_ctx)."""
    est = estimate_memory(facts, n_ctx, kv_cells)
    max_layers = facts.n_layers + 1 if facts.n_layers else 0
    all_layers = max_layers or -1
    budget = _gpu_budget(hw, reserve_bytes) if hw.gpu_backend else 0
    ram = hw.ram_available_bytes
    total = est.total_bytes

    def plan(k: int, where: Where, fits: bool, reason: str, is_pinned: bool = False) -> LayerPlan:
        g, c = {"wont_fit": (0, 0), "cpu": (0, total)}.get(where) or _placement(facts, est, k, max_layers)
        return LayerPlan(n_gpu_layers=k, max_layers=max_layers, where=where, fits=fits,
                         pinned=is_pinned, gpu_bytes=g, cpu_bytes=c, reason=reason, estimate=est)

    fewer = ", fewer parallel sequences (n_parallel)" if est.kv_cells > n_ctx else ""
    fix = f"a smaller quantization or model, a smaller n_ctx{fewer}, or close other programs"
    unknown_vram = bool(hw.gpu_backend) and budget is None  # cannot judge: let llama.cpp try
    combined = ram if hw.unified or not budget else ram + budget
    if total > combined and not unknown_vram:
        vram = f" + {gib(budget)} usable VRAM ({_vram_text(hw, reserve_bytes)})" if budget and not hw.unified else ""
        return plan(0, "wont_fit", False, (
            f"won't fit: needs {est.summary()} but only {gib(ram)} RAM is available{vram}; "
            f"refusing to load rather than swap. Fix: {fix}"))

    if pinned != "auto":
        k = all_layers if pinned < 0 or (max_layers and pinned >= max_layers) else int(pinned)
        if not hw.gpu_backend:
            why = f"pinned n_gpu_layers = {pinned}, but {hw.no_gpu_reason}" if k else "pinned n_gpu_layers = 0"
            return plan(int(pinned), "cpu", True,
                        f"CPU only ({why}): needs {gib(total)} of {gib(ram)} available RAM", True)
        where = _where(k, max_layers, not facts.n_layers)
        g, c = _placement(facts, est, k, max_layers)
        ram_left = ram - g if hw.unified else ram
        ok = (budget is None or g <= budget) and c <= ram_left
        count = f"{k} of {max_layers}" if max_layers and 0 <= k < max_layers else "all"
        verdict = "fits" if ok else "may NOT fit: lower n_gpu_layers or set it to \"auto\""
        return plan(int(pinned), where, ok, (
            f"pinned in models.toml: {count} layers on GPU ({hw.gpu_backend}); {gib(g)} on GPU of "
            f"{_vram_text(hw, reserve_bytes)}, {gib(c)} in RAM of {gib(ram)} available; {verdict}"),
            True)

    if not hw.gpu_backend:
        return plan(0, "cpu", True, f"CPU only ({hw.no_gpu_reason}): needs {gib(total)} of "
                                    f"{gib(ram)} available RAM")
    if budget is None:
        return plan(all_layers, "gpu", True, (
            f"all layers on GPU ({hw.gpu_backend}, free memory unknown): needs {gib(total)}; "
            "pin n_gpu_layers in models.toml if loading fails"))
    count = f"all {max_layers}" if max_layers else "all"
    if total <= budget:
        return plan(all_layers, "gpu", True, (
            f"{count} layers on GPU ({hw.gpu_backend}): needs {gib(total)} of "
            f"{_vram_text(hw, reserve_bytes)}"))
    k = 0
    if facts.n_layers and budget > est.compute_bytes:
        k = min(facts.n_layers - 1, (budget - est.compute_bytes) // max(1, est.layer_bytes))
    g, c = _placement(facts, est, k, max_layers)
    ram_left = ram - g if hw.unified else ram
    if c > ram_left:
        return plan(0, "wont_fit", False, (
            f"won't fit: needs {est.summary()}; at most {k} layers fit in "
            f"{_vram_text(hw, reserve_bytes)}, and the other {gib(c)} exceed the {gib(ram_left)} "
            f"of RAM available; refusing to load rather than swap. Fix: {fix}"))
    if k == 0:
        return plan(0, "cpu", True, (
            f"CPU only: {_vram_text(hw, reserve_bytes)} holds no layer (one layer "
            f"{gib(est.layer_bytes)} + compute {gib(est.compute_bytes)}); needs {gib(total)} of "
            f"{gib(ram)} available RAM"))
    return plan(int(k), "split", True, (
        f"{k} of {max_layers} layers on GPU ({hw.gpu_backend}), {max_layers - k} on CPU: "
        f"{gib(g)} on GPU of {_vram_text(hw, reserve_bytes)}, {gib(c)} in RAM of {gib(ram)} "
        f"available; the whole model needs {gib(total)}"))


def badge(plan: LayerPlan) -> str:
    """Short fit label for one-line listings."""
    if plan.where == "wont_fit":
        return "won't fit"
    if plan.where == "cpu":
        return "CPU"
    label = "GPU" if plan.where == "gpu" else "GPU+CPU"
    count = f" {plan.n_gpu_layers}/{plan.max_layers}" if plan.max_layers and plan.n_gpu_layers >= 0 else ""
    return f"{label}{count}" + ("" if plan.fits else " (may not fit)")


def fits(
    facts: ModelFacts,
    n_ctx: int,
    hw: MemoryFacts,
    pinned: int | Literal["auto"] = "auto",
    reserve_bytes: int = DEFAULT_RESERVE,
    kv_cells: int | None = None,
) -> str:
    """The fit badge ``models list`` shows: "GPU 31/31", "GPU+CPU 20/31", "CPU", "won't fit"."""
    return badge(plan_layers(facts, n_ctx, hw, pinned, reserve_bytes, kv_cells))
