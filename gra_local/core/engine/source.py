"""What a run's source of candidates is (`Source`), and what of the run it may use
(`RunHandle`, which scheduler.Run is): generation.Generation for `gra-local run`,
review_only.ReviewSource for `gra-local review`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

from gra_local.core.candidate import Candidate
from gra_local.core.config import Role
from gra_local.core.engine.pipeline import Pipeline
from gra_local.core.engine.request import RunRequest
from gra_local.core.engine.state import RunState
from gra_local.core.engine.waves import StageContext
from gra_local.core.events import EventSink
from gra_local.core.options import RunOptions
from gra_local.core.quality.canaries import CanarySource


class RunHandle(Protocol):
    """The run as a source sees it."""

    req: RunRequest
    opts: RunOptions
    emit: EventSink

    @property
    def out(self) -> Path: ...
    @property
    def state(self) -> RunState: ...
    @property
    def pipeline(self) -> Pipeline: ...
    @property
    def ctx(self) -> StageContext: ...
    def write_run_json(self) -> None: ...
    def usable(self, role: Role) -> list[str]: ...
    def canaries(self, round_no: int, samples: int = 0) -> list[Candidate]: ...


class Source(Protocol):
    mode: Literal["run", "review"]
    """Recorded in the run's identity: `review` never continues a `run` directory, nor back."""
    roles: tuple[Role, ...]
    """Roles some registered model must be able to play."""

    def options(self, opts: RunOptions) -> RunOptions:
        """The options the run goes by."""
        ...

    def scan(self, req: RunRequest) -> Any:
        """Read the input before anything is written (a bad file leaves no trace)."""
        ...

    def prepare(self, run: RunHandle, seeds_sha: str, scan: Any | None) -> None:
        """Make the run's pool of seeds or pairs (`scan`: None when the directory has one)."""
        ...

    def canary_sources(self, run: RunHandle) -> list[CanarySource]:
        """Known-good pairs canaries are made from (and the relevance threshold calibrated on)."""
        ...

    def rounds(self, run: RunHandle) -> str:
        """Every batch through `run.pipeline`; returns the run's status."""
        ...
