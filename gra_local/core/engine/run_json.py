"""run.json: config, versions, counts, loads, tokens, timings, judge validity, peak RSS."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any, Protocol

from gra_local import __version__
from gra_local.core.candidate import now
from gra_local.core.config import RunOptions
from gra_local.core.engine.request import RunRequest
from gra_local.core.quality.canary_flow import CanaryBook
from gra_local.core.quality.dedup_gate import Gate
from gra_local.core.rundir.resume import SCHEMA_VERSION
from gra_local.core.stats import RunStats


class Run(Protocol):
    """What run.json is built from: a generation or review run as it stands. A protocol,
    so that this module does not import the scheduler that calls it."""

    req: RunRequest
    opts: RunOptions
    out: Path
    status: str
    started: str
    previous: dict | None
    identity_doc: dict
    seeds_info: dict
    stats: RunStats
    book: CanaryBook
    dedup: Gate


def peak_rss_mb() -> dict[str, float | None]:
    """Peak resident memory of this process and of finished worker processes."""
    try:
        import resource
    except ImportError:  # Windows
        return {"main": None, "workers": None}
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / (1024 * 1024)  # KiB vs bytes
    return {
        "main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, 1),
        "workers": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale, 1),
    }


def _llama_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception:
        return None


def calibration_json(run: Run) -> dict[str, Any]:
    """Per-reviewer canary accuracy, parse failures, mean score, agreement with the panel,
    flags; panel-wide Krippendorff's α and Fleiss' κ. Agreement figures need no canaries."""
    book = run.book
    return {"canaries_per_batch": run.opts.canaries, "canaries_judged": len(book.decided),
            "action": run.opts.calibration if run.opts.canaries else None,
            **book.report.model_dump(mode="json")}


def build_run_json(run: Run, elapsed: float) -> dict[str, Any]:
    stats = run.stats
    previous = run.previous or {}
    sessions = list(previous.get("sessions", []))
    sessions.append({"started": run.started, "ended": now(), "status": run.status,
                     "seconds": round(elapsed, 2)})
    validity = {}
    for name, ms in stats.models.items():
        if ms.structured_total:
            validity[name] = {
                "structured_calls": ms.structured_total,
                "valid": round(ms.validity() or 0.0, 4),
                "valid_first_try": round(ms.first_try_validity() or 0.0, 4),
                "counted_failures": ms.structured_failed,
                "invalid_replies": ms.invalid_replies,
            }
    prefix = {
        stage: {"prompt_tokens": st.prompt_tokens, "prompt_evaluated": st.prompt_evaluated,
                "reused": round(1 - st.prompt_evaluated / st.prompt_tokens, 4) if st.prompt_tokens else None}
        for stage, st in stats.stages.items()
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "status": run.status,
        "out_dir": str(run.out),
        "identity": run.identity_doc,
        "config": {
            "seeds": str(run.req.seeds),
            "models_file": run.req.models_source,
            "options": run.opts.model_dump(mode="json"),
            "models": [m.model_dump(mode="json") for m in run.req.registry.models],
        },
        "versions": {"gra_local": __version__, "llama_cpp_python": _llama_version(),
                     "python": platform.python_version(), "platform": platform.platform()},
        "models": {name: ref.model_dump() for name, ref in run.req.refs.items()},
        "seeds": run.seeds_info,
        "counts": stats.counts.model_dump(),
        "rounds": {k: v.model_dump() for k, v in stats.rounds.items()},
        "dedup": run.dedup.describe(),
        "calibration": calibration_json(run),
        "loads": {name: ms.loads for name, ms in stats.models.items()},
        "placement": {name: {"n_gpu_layers": ms.n_gpu_layers, "plan": ms.gpu_plan}
                      for name, ms in stats.models.items()},
        "residency": (None if run.req.residency is None else
                      {"budget_bytes": run.req.residency.budget_bytes,
                       "cost_bytes": run.req.residency.cost_bytes}),
        "unloads": {name: ms.unloads for name, ms in stats.models.items()},
        "tokens": {name: {"prompt": ms.prompt_tokens, "prompt_evaluated": ms.prompt_evaluated,
                          "completion": ms.completion_tokens}
                   for name, ms in stats.models.items()},
        "timings": {stage: round(st.seconds, 3) for stage, st in stats.stages.items()},
        "judge_validity": validity,
        "parse_failures": {name: ms.parse_failures for name, ms in stats.models.items()},
        "prefix_cache": prefix,
        "roles_shared": {"candidates": stats.roles_shared,
                         "models_registered": len(run.req.registry.models),
                         "panel": run.opts.panel},
        "peak_rss_mb": peak_rss_mb(),
        "eta": {"predicted_seconds": run.req.predicted_seconds,
                "actual_seconds": round(sum(x.get("seconds", 0) for x in sessions), 2)},
        "sessions": sessions,
        "stats": stats.model_dump(),
    }
