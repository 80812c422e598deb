"""What a run is asked to do (built by `prepare` for the CLI and the app) and what it ends with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from gra_local.core.config import Registry
from gra_local.core.engine.model_pool import Residency
from gra_local.core.options import RunOptions
from gra_local.core.records import ModelRef
from gra_local.core.rundir.report import RunReport


class RunRequest(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    seeds: Path
    out_dir: Path
    options: RunOptions
    registry: Registry
    refs: dict[str, ModelRef]
    """Provenance of every registered model, checked before anything loads."""
    models_source: str
    cache_dir: Path
    restart: bool = False
    residency: Residency | None = None
    """Memory budget for keeping several models loaded; None: one model at a time."""
    embedder: Any = None
    """Sentence embedder (a core.dedup.Embedder) for semantic dedup; typed loosely so that
    building a request does not import numpy. None with dedup_threshold set is an error."""
    scorer: str | None = None
    """The local model that scores likelihood evidence (prepare picks it: the models file's
    `scorer = true` model, else the smallest GGUF); None: no model can."""
    predicted_seconds: float | None = None
    """ETA from the speed figures cached on this machine (`models bench`, a first load's
    probe), reported against the actual time in run.json."""
    eta_note: str | None = None


class RunResult(BaseModel):
    status: str
    out_dir: Path
    run_json: RunReport
    """run.json as last written."""
