"""TUI settings: theme, keymap, default paths and the last run; TOML under the platformdirs
config dir. One root (`Settings`), a docstring per key: the file documents itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w
import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, model_validator

from gra_local.core import paths
from gra_local.core.errors import ConfigError
from gra_local.core.options import RunOptions, option_fields
from gra_local.core.rundir import files

OFF = "off"
"""How the file writes a threshold turned off (RunOptions' None): TOML has no null."""
_MOVED = {"seeds": "last_seeds", "out_dir": "last_out_dir"}
"""Keys the old `[last_run]` table held beside the options, and where they live now."""


def offered_options() -> RunOptions:
    """The options of a first run: RunOptions' defaults, and what the surfaces offer for
    the fields it requires (samples 10)."""
    return RunOptions(**{f.name: f.default for f in option_fields() if f.required})


class Settings(BaseModel):
    """The whole settings.toml (`gra-local config path` prints where it is). Its keys'
    docstrings document the file; nothing reads them at run time, so pydantic is not asked
    to (`use_attribute_docstrings` parses this module's source at each start, ~4 ms)."""

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
    last_seeds: str = ""
    """Seed file of the last run started from the app; empty: the example seeds."""
    last_out_dir: str = ""
    """Output folder of the last run started from the app; empty: `default_out_dir`/run."""
    last_run: RunOptions = Field(default_factory=offered_options)
    """Options of the last run started from the app, keyed as RunOptions names them (see
    `gra-local run --help`); the New run screen starts from them. A threshold turned off
    reads "off"."""

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        """Read the file as older versions wrote it: `[last_run]` also held `seeds` and
        `out_dir` (now `last_seeds`, `last_out_dir`) and left out a threshold turned off."""
        if not isinstance(data, dict) or not isinstance(data.get("last_run"), dict):
            return data
        data, run = dict(data), dict(data["last_run"])
        for old, new in _MOVED.items():
            if old in run:
                data.setdefault(new, run.pop(old))
        for f in option_fields():
            if f.required and f.name not in run:
                run[f.name] = f.default
            if f.none_is_off and run.get(f.name) == OFF:
                run[f.name] = None
        data["last_run"] = run
        return data

    @field_serializer("last_run")
    def _dump_last_run(self, options: RunOptions) -> dict[str, Any]:
        """None as "off" where it turns a feature off, left out where it is the default."""
        out: dict[str, Any] = {}
        values = options.model_dump()
        for f in option_fields():
            value = values[f.name]
            if value is None and f.none_is_off:
                out[f.name] = OFF
            elif value is not None:
                out[f.name] = value
        return out


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
    files.write_atomic(path, tomli_w.dumps(settings.model_dump(mode="json", exclude_none=True)).encode(),
                       symlink_ok=True)
    return path
