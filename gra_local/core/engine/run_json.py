"""Builds run.json (a rundir.report.RunReport) from a run as it stands: config, versions,
counts, loads, tokens, timings, judge validity, calibration, peak RSS."""

from __future__ import annotations

import platform
import sys
import time

from pydantic import TypeAdapter

from gra_local import __version__
from gra_local.core.candidate import now
from gra_local.core.engine.state import RunState
from gra_local.core.quality.dedup_gate import Gate
from gra_local.core.records import Reason
from gra_local.core.rundir.calibration_report import CalibrationSection
from gra_local.core.rundir.report import (
    SCHEMA_VERSION,
    DedupOff,
    DedupOn,
    Eta,
    JudgeValidity,
    LikelihoodSection,
    PeakRss,
    Placement,
    PrefixCache,
    RelevanceSection,
    ResidencyBudget,
    RolesShared,
    RunConfig,
    RunReport,
    Session,
    TokenCounts,
    Versions,
    WorkerFailures,
)
from gra_local.core.stats import RunStats


def peak_rss_mb() -> PeakRss:
    """Peak resident memory of this process and of finished worker processes."""
    try:
        import resource
    except ImportError:  # Windows
        return PeakRss(main=None, workers=None)
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / (1024 * 1024)  # KiB vs bytes
    return PeakRss(
        main=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, 1),
        workers=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale, 1),
    )


def _llama_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception:
        return None


def calibration_section(run: RunState) -> CalibrationSection:
    """Per-reviewer canary accuracy, parse failures, mean score, agreement with the panel,
    flags; panel-wide Krippendorff's α and Fleiss' κ. Agreement figures need no canaries."""
    book, opts = run.book, run.opts
    report = book.report
    return CalibrationSection(
        canaries_per_batch=opts.canaries, canaries_judged=len(book.decided),
        action=opts.calibration if opts.canaries else None,
        reviewers=report.reviewers, panel=report.panel, tau=report.tau,
        min_accuracy=report.min_accuracy, min_canaries=report.min_canaries,
        relevance=report.relevance, evidence=book.evidence(),
        judge=opts.judge if opts.canaries else None, decided_by=book.decided_by(),
        panel_not_asked=run.stats.panel_not_asked)


def _judge_validity(stats: RunStats) -> dict[str, JudgeValidity]:
    return {name: JudgeValidity(structured_calls=ms.structured_total,
                                valid=round(ms.validity() or 0.0, 4),
                                valid_first_try=round(ms.first_try_validity() or 0.0, 4),
                                counted_failures=ms.structured_failed,
                                invalid_replies=ms.invalid_replies)
            for name, ms in stats.models.items() if ms.structured_total}


def _prefix_cache(stats: RunStats) -> dict[str, PrefixCache]:
    return {stage: PrefixCache(prompt_tokens=st.prompt_tokens, prompt_evaluated=st.prompt_evaluated,
                               reused=(round(1 - st.prompt_evaluated / st.prompt_tokens, 4)
                                       if st.prompt_tokens else None))
            for stage, st in stats.stages.items()}


def build_run_json(run: RunState, elapsed: float | None = None) -> RunReport:
    """run.json as the run stands (`elapsed`: seconds of this session, by default since
    the state was opened). Built from a snapshot of the counters, so the report does not
    change under a caller that keeps it while the run goes on."""
    if elapsed is None:
        elapsed = time.perf_counter() - run.t0
    stats = run.stats.model_copy(deep=True)
    req, opts = run.req, run.opts
    sessions = [*(run.previous.sessions if run.previous is not None else []),
                Session(started=run.started, ended=now(), status=run.status,
                        seconds=round(elapsed, 2))]
    models = stats.models.items()
    return RunReport(
        schema_version=SCHEMA_VERSION,
        status=run.status,
        out_dir=str(run.out),
        identity=run.identity,
        config=RunConfig(seeds=str(req.seeds), models_file=req.models_source,
                         options=opts.model_dump(mode="json"),
                         models=[m.model_dump(mode="json") for m in req.registry.models]),
        versions=Versions(gra_local=__version__, llama_cpp_python=_llama_version(),
                          python=platform.python_version(), platform=platform.platform()),
        models=dict(req.refs),
        seeds=run.seeds_info,
        counts=stats.counts,
        rounds=stats.rounds,
        dedup=_dedup(run.dedup),
        calibration=calibration_section(run),
        relevance=_relevance(run.relevance_info, stats, opts.panel),
        likelihood=_likelihood(run, stats),
        loads={name: ms.loads for name, ms in models},
        placement={name: Placement(n_gpu_layers=ms.n_gpu_layers, plan=ms.gpu_plan,
                                   n_parallel=ms.n_parallel)
                   for name, ms in models},
        residency=(None if req.residency is None else
                   ResidencyBudget(budget_bytes=req.residency.budget_bytes,
                                   cost_bytes=req.residency.cost_bytes)),
        unloads={name: ms.unloads for name, ms in models},
        worker_failures={name: WorkerFailures(losses=ms.worker_losses,
                                              dropped=run.pool.drop_reason(name))
                         for name, ms in models if ms.worker_losses},
        tokens={name: TokenCounts(prompt=ms.prompt_tokens, prompt_evaluated=ms.prompt_evaluated,
                                  completion=ms.completion_tokens)
                for name, ms in models},
        timings={stage: round(st.seconds, 3) for stage, st in stats.stages.items()},
        judge_validity=_judge_validity(stats),
        parse_failures={name: ms.parse_failures for name, ms in models},
        prefix_cache=_prefix_cache(stats),
        roles_shared=RolesShared(candidates=stats.roles_shared,
                                 models_registered=len(req.registry.models), panel=opts.panel),
        routing=stats.routing if opts.routing else None,
        peak_rss_mb=peak_rss_mb(),
        eta=Eta(predicted_seconds=req.predicted_seconds,
                actual_seconds=round(sum(s.seconds for s in sessions), 2)),
        sessions=sessions,
        stats=stats,
    )


_DEDUP: TypeAdapter[DedupOn | DedupOff] = TypeAdapter(DedupOn | DedupOff)
"""The dedup gate describes itself as a mapping (core.quality's Gate predates the report
types); `enabled` picks which of the two shapes it is."""


def _dedup(gate: Gate) -> DedupOn | DedupOff:
    return _DEDUP.validate_python(gate.describe())


def _likelihood(run: RunState, stats: RunStats) -> LikelihoodSection:
    scored = stats.stages["likelihood"].calls if "likelihood" in stats.stages else 0
    if not run.opts.likelihood:
        return LikelihoodSection(enabled=False, note="off (--no-likelihood)")
    if run.scorer is None:
        return LikelihoodSection(enabled=False, note="off: no GGUF model to score with (a server "
                                 "gives log-probs only for tokens it generates)")
    note = None
    if (why := run.pool.drop_reason(run.scorer)) is not None:
        note = f"{run.scorer} failed ({why}): the run went on without likelihood evidence"
    return LikelihoodSection(enabled=True, model=run.scorer, scored=scored, note=note,
                             unscored=dict(sorted(stats.unscored.items())))


def _relevance(info: RelevanceSection | None, stats: RunStats,
               panel: int) -> RelevanceSection | None:
    """The vetoes come from the decision counters, which a resume recounts from the files."""
    if info is None:
        return None
    vetoed = stats.counts.by_reason.get(Reason.OFF_TOPIC.value, 0)
    return info.model_copy(update={"vetoed": vetoed, "calls_saved": vetoed * panel * 2})
