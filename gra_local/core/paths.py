"""Where gra-local keeps its files. Environment variables (GRA_LOCAL_CONFIG_DIR,
GRA_LOCAL_CACHE_DIR, GRA_LOCAL_DATA_DIR) override the platform defaults, read at every call,
never at import (tests and CI set them to stay isolated: see scripts/private_dirs.py)."""

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

