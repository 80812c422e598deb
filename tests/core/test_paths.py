"""gra-local's directories: the GRA_LOCAL_*_DIR variables win over the platform defaults,
read at each call (never frozen at import). The helpers that move them all for benches and
tests live in scripts/private_dirs.py (tests/scripts/test_private_dirs.py)."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from gra_local.core import paths


def test_each_dir_follows_its_variable_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, get in (("GRA_LOCAL_CONFIG_DIR", paths.config_dir), ("GRA_LOCAL_CACHE_DIR", paths.cache_dir),
                     ("GRA_LOCAL_DATA_DIR", paths.data_dir)):
        monkeypatch.setenv(var, str(tmp_path / "a"))
        assert get() == tmp_path / "a"
        monkeypatch.setenv(var, str(tmp_path / "b"))
        assert get() == tmp_path / "b"
    assert paths.user_registry_path() == tmp_path / "b" / "models.toml"


def test_an_unset_or_empty_variable_means_the_platform_default(monkeypatch: pytest.MonkeyPatch) -> None:
    default = Path(platformdirs.user_cache_dir(paths.APP, appauthor=False))
    monkeypatch.setenv("GRA_LOCAL_CACHE_DIR", "")
    assert paths.cache_dir() == default
    monkeypatch.delenv("GRA_LOCAL_CACHE_DIR")
    assert paths.cache_dir() == default


def test_a_home_relative_value_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GRA_LOCAL_DATA_DIR", "~/gra-data")
    assert paths.data_dir() == tmp_path / "gra-data"
