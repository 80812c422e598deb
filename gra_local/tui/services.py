"""What the screens need from the outside world, injected so tests can swap the backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gra_local.core.backend import Backend
from gra_local.core.config import Registry
from gra_local.models.registry import load_models
from gra_local.tui.settings import Settings, load_settings, save_settings


def llama_backend(log_dir: Path) -> Backend:
    from gra_local.backends.llama_process import LlamaProcessBackend

    return LlamaProcessBackend(log_dir=log_dir)


@dataclass
class Services:
    models_file: Path | None = None
    """--models FILE for the session; None: the user registry."""
    backend_factory: Callable[[Path], Backend] = llama_backend
    """log dir → Backend; the real one runs llama.cpp worker processes."""
    settings: Settings = field(default_factory=load_settings)

    def registry(self) -> tuple[Registry, str]:
        return load_models(self.models_file)

    def save_settings(self) -> None:
        save_settings(self.settings)
