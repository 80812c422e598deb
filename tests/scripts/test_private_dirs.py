"""scripts/private_dirs.py: private user dirs for benches and the test session, the user's
models still found, nothing written to the user's dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from private_dirs import OWN_DIRS, XDG_DIRS, shadow_data_dir, use_private_dirs  # scripts/: see conftest

from gra_local.core import paths


def test_shadow_data_dir_links_models_and_keeps_writes(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "models").mkdir(parents=True)
    (real / "models" / "m.gguf").write_bytes(b"GGUF")
    shadow = shadow_data_dir(real, tmp_path / "shadow")
    assert (shadow / "models" / "m.gguf").read_bytes() == b"GGUF"
    assert (shadow / "models" / "m.gguf").is_symlink()
    (shadow / "models" / "new.gguf").write_bytes(b"x")
    assert sorted(p.name for p in (real / "models").iterdir()) == ["m.gguf"]


def test_use_private_dirs_moves_every_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real-data"
    (real / "models").mkdir(parents=True)
    (real / "models" / "m.gguf").write_bytes(b"GGUF")
    for var in (*XDG_DIRS, *OWN_DIRS):  # restored after the test, whatever it sets
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GRA_LOCAL_DATA_DIR", str(real))
    root = tmp_path / "home"
    use_private_dirs(root)
    assert paths.config_dir() == root / "config" / paths.APP
    assert paths.cache_dir() == root / "cache" / paths.APP
    assert paths.data_dir() == root / "data" / paths.APP
    assert (paths.data_dir() / "models" / "m.gguf").resolve() == (real / "models" / "m.gguf").resolve()
    assert {os.environ[v] for v in XDG_DIRS} == {str(root / d) for d in ("config", "cache", "data", "state")}
