"""What the screens need from the outside world, injected so tests can swap the backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gra_local.tui.settings import Settings, load_settings, save_settings

if TYPE_CHECKING:  # the registry and the backend load in the checks' workers, after the first frame
    from gra_local.core.backend import Backend
    from gra_local.core.config import Registry
    from gra_local.core.options import RunOptions


def llama_backend(log_dir: Path, spare_cores: int = 0, probe_speed: bool = True) -> Backend:
    """llama.cpp worker processes for GGUF models, and endpoint models through their servers."""
    from gra_local.backends.llama.process import LlamaProcessBackend
    from gra_local.backends.routing import RoutingBackend

    return RoutingBackend(LlamaProcessBackend(log_dir=log_dir, spare_cores=spare_cores,
                                              probe_speed=probe_speed))


@dataclass
class Services:
    models_file: Path | None = None
    """--models FILE for the session; None: the user registry."""
    backend_factory: Callable[[Path], Backend] | None = None
    """log dir → Backend, for tests; None: llama.cpp worker processes (see `backend`)."""
    settings: Settings = field(default_factory=load_settings)

    def backend(self, log_dir: Path, probe_speed: bool = True) -> Backend:
        """`probe_speed` False: a bench, which measures the speed itself."""
        if self.backend_factory is not None:
            return self.backend_factory(log_dir)
        return llama_backend(log_dir, spare_cores=1 if self.settings.spare_core else 0,
                             probe_speed=probe_speed)

    def registry(self) -> tuple[Registry, str]:
        from gra_local.models.registry import load_models

        return load_models(self.models_file)

    def save_settings(self) -> None:
        save_settings(self.settings)

    def remember_run(self, seeds: str, out_dir: str, options: RunOptions) -> None:
        """Keep what a run was started with, for the next New run form; OSError when the
        settings file cannot be written (the settings stay updated for this session)."""
        self.settings = self.settings.model_copy(
            update={"last_seeds": seeds, "last_out_dir": out_dir, "last_run": options})
        self.save_settings()


DEMO_NOTICE = ("the embedded SmolLM2-135M is a demo model (it cannot judge answers); add your "
               "own GGUF models on Models: a Add, d Discover, e endpoint")


def demo_notice(registry: Registry) -> str | None:
    """The one line a first run needs when the registry holds the embedded model alone."""
    models = registry.models
    return DEMO_NOTICE if models and all(m.is_default for m in models) else None


@runtime_checkable
class HasServices(Protocol):
    """An app that carries Services: GraApp, and the tests' one-screen host."""

    services: Services


def services_of(app: object) -> Services:
    """The app's Services, typed, for a screen that needs nothing else of the app."""
    if not isinstance(app, HasServices):
        raise TypeError(f"{type(app).__name__} carries no Services")
    return app.services


@runtime_checkable
class ShowsRuns(HasServices, Protocol):
    """An app whose results screen opens one run first (GraApp's `run_dir`)."""

    run_dir: Path | None

