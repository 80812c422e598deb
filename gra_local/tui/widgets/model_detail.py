"""The Models screen's row data, its table cells and its detail text, for GGUF and endpoint
models (pure: no widgets, and no I/O but `bench_text`'s read of the bench store)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gra_local.core.config import ModelSpec
from gra_local.models.describe import human_params, human_size
from gra_local.models.gguf_info import GGUFInfo
from gra_local.models.planner import LayerPlan, badge, gib
from gra_local.runs.formatting import MISSING
from gra_local.tui.errors import EXPECTED_ERRORS

if TYPE_CHECKING:
    from gra_local.backends.endpoint.reach import EndpointReach


@dataclass
class Row:
    spec: ModelSpec
    info: GGUFInfo | None = None
    plan: LayerPlan | None = None
    n_ctx: int | None = None
    problem: str | None = None
    bench: str | None = None
    reach: EndpointReach | None = None
    """An endpoint model's servers as last checked; None until the check comes back."""


def bench_text(spec: ModelSpec) -> str | None:
    """The model's last `models bench` result in one line; None when it has none."""
    from gra_local.core import paths
    from gra_local.models.bench import BenchStore
    from gra_local.models.resolve import model_path

    try:
        result = BenchStore(paths.cache_dir()).latest(model_path(spec))
    except EXPECTED_ERRORS:  # ModelError: an endpoint, a default not fetched; OSError: no file
        return None
    if result is None:
        return None
    return (f"load {result.load_seconds:.1f} s, prompt {result.prompt_tokens_per_s:.0f} tok/s, "
            f"decode {result.decode_tokens_per_s:.0f} tok/s, {result.n_gpu_layers} GPU layers")


def table_cells(row: Row) -> list[str]:
    """The row in the table: name, quant, size, params, ctx, roles, fit. An endpoint model
    shows its server kind, its host and, as its fit, whether it answers and how fast."""
    roles = ",".join(r.value[:3] for r in row.spec.roles)
    if row.spec.is_endpoint:
        up = sorted(row.reach.up, key=lambda s: s.rtt_ms or 0.0) if row.reach else []
        urls = row.spec.endpoints
        host = urlsplit(urls[0]).netloc + (f" +{len(urls) - 1}" if len(urls) > 1 else "")
        return [row.spec.name, (up[0].kind if up else None) or "endpoint", host, MISSING,
                str((up[0].n_ctx if up else None) or MISSING), roles, _reach_badge(row)]
    info, plan = row.info, row.plan
    fit = badge(plan) if plan else ("problem" if row.problem else "?")
    return [row.spec.name, info.file_type if info else MISSING,
            human_size(info.size_bytes) if info else MISSING,
            human_params(info.parameter_count) if info else MISSING,
            str(row.n_ctx or MISSING), roles, fit]


def _reach_badge(row: Row) -> str:
    reach = row.reach
    if reach is None:
        return "problem" if row.problem else "checking"
    if reach.usable:
        return f"up {min(s.rtt_ms or 0.0 for s in reach.up):.0f} ms"
    states = {s.state for s in reach.servers}
    return "unchecked" if states == {"unchecked"} else "problem" if "problem" in states else "down"


def describe_endpoint(row: Row) -> str:
    """An endpoint model: its servers, model id, key variable (never the key) and what the
    last check found."""
    spec, reach = row.spec, row.reach
    lines = [spec.name, "",
             f"endpoint     {', '.join(spec.endpoints)}",
             f"model        {spec.model or 'the only one the server lists'}",
             f"key          {'from $' + spec.api_key_env if spec.api_key_env else 'none'}",
             f"server kind  {spec.server or 'detected when a run starts'}",
             f"in flight    {spec.max_in_flight} per server",
             f"roles        {', '.join(r.value for r in spec.roles)}", ""]
    if row.problem:
        lines.append(f"PROBLEM: {row.problem}")
    elif reach is None:
        lines.append("Checking the server(s)…")
    else:
        lines.append(f"Servers: {reach.summary()}")
        for server in reach.servers:
            lines += [server.endpoint, f"  {server.summary()}"]
    return "\n".join(lines)


def describe_row(row: Row) -> str:
    """Everything inspect knows, the memory estimate and the planned layers, as plain text."""
    if row.spec.is_endpoint:
        return describe_endpoint(row)
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
