"""The worker process seen from outside: the environment it starts with, and what its
exit and its log say when it dies (process.LlamaProcessSession)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

WORKER_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TMPDIR", "TEMP", "TMP",
              "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "SYSTEMROOT",
              "WINDIR", "COMSPEC", "PATHEXT", "APPDATA", "LOCALAPPDATA", "USERPROFILE",
              "NUMBER_OF_PROCESSORS", "PROCESSOR_ARCHITECTURE")
WORKER_ENV_PREFIXES = ("LC_", "XDG_", "GRA_LOCAL_", "CUDA_", "NVIDIA_", "HIP_", "ROCR_",
                       "HSA_", "GGML_", "LLAMA_", "OMP_", "KMP_", "MKL_", "OPENBLAS_",
                       "GOMP_", "VK_", "DYLD_", "METAL_", "MTL_")


def worker_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: what Python, llama.cpp and the GPU runtimes read, nothing
    else (no tokens, keys or passwords it has no use for; the chat template it renders is
    untrusted input)."""
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if k in WORKER_ENV or k.startswith(WORKER_ENV_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def log_tail(path: Path, lines: int = 6) -> str:
    """What the log says went wrong: llama.cpp's own error lines first, else its last lines."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    errors = [ln.strip() for ln in text if "error" in ln.lower() and "Traceback" not in ln
              and not ln.lstrip().startswith(("File ", "raise "))]
    useful = errors[-3:] or [ln for ln in text if ln.strip()][-lines:]
    return " | ".join(useful)
