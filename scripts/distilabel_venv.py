"""distilabel's own virtual environment for scripts/bench_vs_distilabel.py: distilabel 1.5.3
with its llama-cpp extra, reusing the llama-cpp-python this project already built (repacked
from the installed files, or pip's cached wheel) instead of building it again.

Not part of the product; the bench puts this folder on sys.path to import it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from base64 import urlsafe_b64encode
from importlib.metadata import distribution
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO / ".bench" / "distilabel-venv"
DISTILABEL = "distilabel[llama-cpp]==1.5.3"
LLAMA_DIST = "llama_cpp_python"


def _lib_hashes(record: str) -> dict[str, str]:
    """RECORD hashes of llama-cpp-python's shared libraries (the build that matters)."""
    out = {}
    for line in record.splitlines():
        path, _, rest = line.partition(",")
        if path.startswith("llama_cpp/lib/") and ".so" in path:
            out[path] = rest.split(",")[0]
    return out


def _cached_wheel(version: str, want: dict[str, str]) -> Path | None:
    """A wheel in pip's cache whose libraries are byte-identical to our installed build."""
    res = subprocess.run([sys.executable, "-m", "pip", "cache", "list", LLAMA_DIST,
                          "--format=abspath"], capture_output=True, text=True, check=False)
    for line in res.stdout.splitlines():
        whl = Path(line.strip())
        if not whl.name.startswith(f"{LLAMA_DIST}-{version}-") or not whl.is_file():
            continue
        try:
            with zipfile.ZipFile(whl) as z:
                record = z.read(f"{LLAMA_DIST}-{version}.dist-info/RECORD").decode()
        except (OSError, KeyError, zipfile.BadZipFile):
            continue
        if _lib_hashes(record) == want:
            return whl
    return None


def _repack_installed(dest: Path) -> Path:
    """Zip our installed llama-cpp-python back into a wheel (files are installed verbatim)."""
    dist = distribution(LLAMA_DIST)
    root = Path(str(dist.locate_file("")))
    info = next(p for p in (dist.files or []) if p.name == "WHEEL").parent.as_posix()
    tags = [ln.split(":", 1)[1].strip() for ln in (dist.read_text("WHEEL") or "").splitlines()
            if ln.startswith("Tag:")]
    whl = dest / f"{LLAMA_DIST}-{dist.version}-{tags[0]}.whl"
    skip = {f"{info}/{n}" for n in ("INSTALLER", "REQUESTED", "direct_url.json", "RECORD")}
    record = []
    with zipfile.ZipFile(whl, "w", zipfile.ZIP_DEFLATED) as z:
        for f in dist.files or []:
            name = f.as_posix()
            if name in skip or "__pycache__" in name or name.startswith(".."):
                continue
            data = (root / name).read_bytes()
            digest = urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            z.writestr(name, data)
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return whl


def setup_venv(venv: Path) -> str | None:
    """Create `venv` with distilabel[llama-cpp] + requests, reusing our llama-cpp-python
    build; None when it works, else why not."""
    t0 = time.perf_counter()
    dist = distribution(LLAMA_DIST)
    want = _lib_hashes(dist.read_text("RECORD") or "")
    print(f"setup: creating {venv}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    py = venv / "bin" / "python"
    log = venv / "setup-pip.log"
    with tempfile.TemporaryDirectory(prefix="gra-bench-whl-") as tmp:
        whl = _cached_wheel(dist.version, want)
        how = f"pip's cached wheel {whl}" if whl else ""
        if whl is None:
            whl = _repack_installed(Path(tmp))
            how = "a wheel repacked from .venv's installed files (no matching wheel in pip's cache)"
        print(f"setup: llama-cpp-python {dist.version} from {how}")
        with log.open("w") as f:
            res = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check",
                                  str(whl), DISTILABEL, "requests"],
                                 stdout=f, stderr=subprocess.STDOUT, check=False)
    if res.returncode != 0:
        tail = [ln for ln in log.read_text().splitlines() if "WARNING: Location" not in ln][-3:]
        return f"pip install {DISTILABEL} failed (exit {res.returncode}): {' | '.join(tail)}"
    check = subprocess.run([str(py), "-c", "import distilabel, llama_cpp, requests; "
                            "print(distilabel.__version__, llama_cpp.__version__)"],
                           capture_output=True, text=True, check=False,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if check.returncode != 0:
        return f"distilabel installed but does not import: {check.stderr.strip().splitlines()[-1:]}"
    got = check.stdout.split()
    print(f"setup: distilabel {got[0]} with llama-cpp-python {got[1]} ready in "
          f"{time.perf_counter() - t0:.0f} s (pip log: {log})")
    return None
