"""What a run will cost before it starts (New run's plan box): plain functions, so that
the screen's worker and the tests call them alike. The worker imports this module once
the form is drawn (the form itself is option_form's).

The plan is, per model of the registry, its memory plan on this machine (GPU layers,
sequences decoded together, KV cache: `models.parallel.plan_parallel` and
`models.fit.plan_for`, as a load would make them; an endpoint model is served by its
server), the calls each stage is expected to make (`eta.calls_for`), and the ETA line
`gra-local run` prints (`models.bench.predict_from_cache`: from cached speed figures,
else a word that the ETA comes at the first load).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from gra_local.core.config import ModelSpec, Registry
from gra_local.core.engine.eta import calls_for
from gra_local.core.errors import GraError
from gra_local.core.options import RunOptions
from gra_local.models.gguf_info import GGUFInfo
from gra_local.models.hardware import Hardware
from gra_local.models.planner import gib


def probe_hardware() -> Hardware:
    """This machine (the tests put a fixed one here)."""
    from gra_local.models.hardware import probe

    return probe()


def calls_line(options: RunOptions | None, review: bool, reviewers: int | None = None) -> str:
    """The calls each stage is expected to make, at the acceptance the ETA assumes (the
    plan box's title says it), counted as the run's own estimate counts them
    (`eta.calls_for`, judge-aware; `reviewers`: the distinct models)."""
    if review:
        judge = options.judge if options is not None else RunOptions.model_fields["judge"].default
        if judge == "evidence":
            return ("calls: likelihood 1 per pair and canary side; panel on the canaries "
                    "only; no ETA for a review")
        return "calls: review_a and review_b each panel × every usable pair; no ETA for a review"
    if options is None:
        return "calls: — (an option above is not valid yet)"
    calls = calls_for(options, reviewers)
    return "calls: " + " · ".join(f"{stage} {n}" for stage, n in calls.items())


def served_by(spec: ModelSpec) -> str:
    urls = spec.endpoints
    host = urlsplit(urls[0]).netloc if urls else "?"
    more = f" +{len(urls) - 1}" if len(urls) > 1 else ""
    return f"served by {spec.server or 'a server'} at {host}{more}"


def memory_line(spec: ModelSpec, info: GGUFInfo, hw: Hardware) -> str:
    """One model's memory plan: where it goes, GPU layers, sequences, KV cache."""
    from gra_local.models.fit import context_for, plan_for
    from gra_local.models.parallel import plan_parallel

    n_ctx = context_for(spec, info)
    parallel = plan_parallel(spec, info, n_ctx, hw)
    plan = plan_for(spec, info, n_ctx, hw, kv_cells=parallel.kv_cells)
    where = {"gpu": "GPU", "split": "GPU+CPU", "cpu": "CPU", "wont_fit": "WON'T FIT"}[plan.where]
    layers = f"{plan.n_gpu_layers}/{plan.max_layers}" if plan.n_gpu_layers >= 0 else "all"
    return (f"{where} · GPU layers {layers} · n_parallel {parallel.n_parallel} · KV "
            f"{parallel.kv_cells} cells ({gib(parallel.kv_bytes)}) · {gib(plan.estimate.total_bytes)} "
            "in all")


def plan_lines(registry: Registry, hw: Hardware | None) -> tuple[list[str], list[tuple[ModelSpec, GGUFInfo]]]:
    """A line per model (its memory plan, or where it is served, or why it cannot be
    planned), and the GGUF models whose headers were read (for the ETA)."""
    from gra_local.models.resolve import inspect_spec

    width = max((len(s.name) for s in registry.models), default=0)
    lines: list[str] = []
    checked: list[tuple[ModelSpec, GGUFInfo]] = []
    for spec in registry.models:
        try:
            if spec.is_endpoint:
                text = served_by(spec)
            else:
                info = inspect_spec(spec)
                checked.append((spec, info))
                text = memory_line(spec, info, hw if hw is not None else probe_hardware())
        except GraError as exc:
            text = str(exc)
        lines.append(f"{spec.name:{width}}  {text}")
    return lines, checked


def eta_line(options: RunOptions | None, checked: list[tuple[ModelSpec, GGUFInfo]],
             endpoints: list[str], review: bool) -> str:
    """The line `gra-local run` prints about the ETA (models.bench.predict_from_cache)."""
    if review or options is None:
        return ""
    from gra_local.models.bench import predict_from_cache

    return predict_from_cache(options, checked, endpoints)[1]
