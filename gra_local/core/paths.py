"""Where gra-local keeps its files. Environment variables override the platform defaults
(tests and CI use them to stay isolated)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "gra-local"


def _dir(env: str, default: str) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else Path(default)


def data_dir() -> Path:
    """Downloaded models (the embedded default lives in data_dir()/models)."""
    return _dir("GRA_LOCAL_DATA_DIR", platformdirs.user_data_dir(APP, appauthor=False))


def config_dir() -> Path:
    """The user's registry (models.toml) and settings."""
    return _dir("GRA_LOCAL_CONFIG_DIR", platformdirs.user_config_dir(APP, appauthor=False))


def cache_dir() -> Path:
    """Annotation cache and the sha256 cache."""
    return _dir("GRA_LOCAL_CACHE_DIR", platformdirs.user_cache_dir(APP, appauthor=False))


def user_registry_path() -> Path:
    return config_dir() / "models.toml"


def shadow_data_dir(real: Path, shadow: Path) -> Path:
    """`shadow` laid out like the data dir `real` (models/, embedders/, ...), each entry a
    symlink to the real one: the downloaded models are found, and anything written (a pull,
    a new file) lands in `shadow`, never in `real`. Benches and the test session run with
    such a private data dir, so they leave the user's own untouched."""
    shadow.mkdir(parents=True, exist_ok=True)
    if real.is_dir():
        for group in real.iterdir():
            if group.is_dir():
                (shadow / group.name).mkdir(exist_ok=True)
                for entry in group.iterdir():
                    link = shadow / group.name / entry.name
                    if not link.exists():
                        link.symlink_to(entry.resolve())
    return shadow


XDG_DIRS = ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")
OWN_DIRS = ("GRA_LOCAL_CONFIG_DIR", "GRA_LOCAL_CACHE_DIR", "GRA_LOCAL_DATA_DIR")


def use_private_dirs(root: Path) -> None:
    """Point this process's and its children's config, cache, data and state directories
    (the XDG ones and our own GRA_LOCAL_*_DIR) into `root`, the data dir as a shadow of the
    user's (models still found, nothing written there). For benches and the test session."""
    real_data = data_dir()  # the user's, before anything moves
    for var in XDG_DIRS:
        os.environ[var] = str(root / var.split("_")[1].lower())
    os.environ["GRA_LOCAL_CONFIG_DIR"] = str(root / "config" / APP)
    os.environ["GRA_LOCAL_CACHE_DIR"] = str(root / "cache" / APP)
    os.environ["GRA_LOCAL_DATA_DIR"] = str(shadow_data_dir(real_data, root / "data" / APP))
