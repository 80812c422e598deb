"""The Models screen's row data and its detail text (pure: no I/O, no widgets)."""

from __future__ import annotations

from dataclasses import dataclass

from gra_local.core.config import ModelSpec
from gra_local.models.describe import human_params, human_size
from gra_local.models.gguf_info import GGUFInfo
from gra_local.models.planner import LayerPlan, badge, gib


@dataclass
class Row:
    spec: ModelSpec
    info: GGUFInfo | None = None
    plan: LayerPlan | None = None
    n_ctx: int | None = None
    problem: str | None = None
    bench: str | None = None


def describe_row(row: Row) -> str:
    """Everything inspect knows, the memory estimate and the planned layers, as plain text."""
    spec, info, plan = row.spec, row.info, row.plan
    lines = [spec.name, "",
             f"path         {'default (embedded SmolLM2-135M)' if spec.is_default else spec.path}",
             f"roles        {', '.join(r.value for r in spec.roles)}"]
    if spec.chat_format:
        lines.append(f"chat format  {spec.chat_format}")
    if row.problem:
        lines += ["", f"PROBLEM: {row.problem}"]
    if info is not None:
        lines += [
            f"architecture {info.architecture}",
            f"quantization {info.file_type}",
            f"size         {human_size(info.size_bytes)}",
            f"parameters   {human_params(info.parameter_count)}",
            f"trained ctx  {info.context_length or '?'}",
            f"layers       {info.block_count or '?'}",
            f"embedding    {info.embedding_length or '?'}",
            f"heads        {info.head_count or '?'} (kv {info.head_count_kv or '?'})",
            f"tokenizer    {info.tokenizer_model or '?'}",
            f"chat templ.  {'yes' if info.chat_template else 'no'}",
            f"GGUF version {info.gguf_version}",
        ]
    if plan is not None:
        est = plan.estimate
        lines += ["", f"Memory at n_ctx {est.n_ctx}: {gib(est.total_bytes)} "
                      f"(weights {gib(est.weights_bytes)}, KV cache {gib(est.kv_bytes)}, "
                      f"compute {gib(est.compute_bytes)})",
                  f"Plan: {badge(plan)}; GPU layers {plan.n_gpu_layers}/{plan.max_layers}",
                  f"Why: {plan.reason}"]
        lines += [f"note: {n}" for n in est.notes]
    if row.bench:
        lines += ["", f"Bench: {row.bench}"]
    return "\n".join(lines)
