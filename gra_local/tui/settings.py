"""TUI settings: theme, keymap, default paths; TOML under the platformdirs config dir."""

from __future__ import annotations

from pathlib import Path

import tomli_w
import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gra_local.core import paths
from gra_local.core.errors import ConfigError


class LastRun(BaseModel):
    """What the New run screen remembers between sessions."""

    model_config = ConfigDict(extra="forbid")

    seeds: str = ""
    out_dir: str = ""
    samples: int = 10
    max_attempts: int | None = None
    rounds: int = 1
    panel: int = 3
    tau: float = 8.0
    delta: float = 1.5
    batch: int | None = None
    dedup_threshold: float | None = 0.9
    """None: semantic dedup off (typed as "off" on the form)."""
    canaries: int = 0


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theme: str = "textual-dark"
    """Any Textual theme name (the command palette lists them)."""
    spare_core: bool = True
    """During runs started from the app, llama.cpp leaves one CPU core to the app (unless a
    model pins n_threads), so the screen stays responsive on small machines; set false
    for the last bit of CPU speed."""
    keymap: dict[str, str] = Field(default_factory=dict)
    """Binding id → key(s), e.g. {"screen.models" = "f2"}; ids are listed in the README."""
    default_out_dir: str = "out"
    """Where new runs go unless the New run screen says otherwise."""
    last_run: LastRun = Field(default_factory=LastRun)


def settings_path() -> Path:
    return paths.config_dir() / "settings.toml"


def load_settings(path: Path | None = None) -> Settings:
    path = path or settings_path()
    if not path.is_file():
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return Settings.model_validate(data)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(map(str, err["loc"]))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"{path}: key {key!r}: {msg}") from None


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(tomli_w.dumps(settings.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    tmp.replace(path)
    return path
