"""The llama.cpp backend: one worker process per loaded model.

llama-cpp-python does not reliably free memory on close, and a crash in llama.cpp would
take the whole app down; a process per model makes unloading exact and crashes local.
The worker's stdout/stderr go to a log file, never to the user's terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import orjson

from gra_local.core.backend import ChatRequest, ChatResult, LoadInfo
from gra_local.core.config import ModelSpec
from gra_local.core.errors import BackendError, ModelError
from gra_local.models.fit import context_for, gpu_layers_for
from gra_local.models.resolve import check_model_file


def _log_tail(path: Path, lines: int = 6) -> str:
    """What the log says went wrong: llama.cpp's own error lines first, else its last lines."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    errors = [ln.strip() for ln in text if "error" in ln.lower() and "Traceback" not in ln
              and not ln.lstrip().startswith(("File ", "raise "))]
    useful = errors[-3:] or [ln for ln in text if ln.strip()][-lines:]
    return " | ".join(useful)


class LlamaProcessSession:
    """A model loaded in its own worker process."""

    def __init__(self, spec: ModelSpec, path: Path, log_path: Path, n_ctx: int,
                 spare_cores: int = 0) -> None:
        self.spec = spec
        self.path = path
        self.on_partial: Callable[[str], None] | None = None
        """Receives the text generated so far, a few times a second, when requests ask."""
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gra_local.backends.llama_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        reply = self._call({
            "op": "load",
            "path": str(path),
            "n_ctx": n_ctx,
            "n_gpu_layers": spec.n_gpu_layers,
            "n_threads": spec.n_threads,
            "spare_cores": spare_cores,
            "chat_format": spec.chat_format,
        }, loading=True)
        self.info = LoadInfo(
            name=spec.name,
            seconds=reply["seconds"],
            n_gpu_layers=reply["n_gpu_layers"],
            n_ctx=reply["n_ctx"],
            gpu_offload=reply["gpu_offload"],
            details=reply.get("details", {}),
        )

    def _call(self, payload: dict, loading: bool = False) -> dict:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(orjson.dumps(payload) + b"\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
            while line.startswith(b'{"partial"'):
                if self.on_partial is not None:
                    self.on_partial(orjson.loads(line)["partial"])
                line = self._proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = b""
        if not line:
            code = self._proc.wait()
            self._log.close()
            tail = _log_tail(self.log_path)
            what = "loading" if loading else "running"
            raise (ModelError if loading else BackendError)(
                f"model {self.spec.name!r}: worker process died while {what} (exit code {code}); "
                f"log {self.log_path}: {tail}"
            )
        reply = orjson.loads(line)
        if not reply.get("ok"):
            if loading:
                self.close()
                raise ModelError(
                    f"model {self.spec.name!r}: llama.cpp could not load {self.path}: "
                    f"{reply.get('error')}; log {self.log_path}: {_log_tail(self.log_path, 3)}"
                )
            raise BackendError(f"model {self.spec.name!r}: {reply.get('error')}")
        return reply

    def chat(self, request: ChatRequest) -> ChatResult:
        reply = self._call({"op": "chat", **request.model_dump()})
        return ChatResult(
            text=reply["text"],
            finish_reason=reply["finish_reason"],
            prompt_tokens=reply["prompt_tokens"],
            completion_tokens=reply["completion_tokens"],
            prompt_evaluated=reply.get("prompt_evaluated"),
            seconds=reply["seconds"],
        )

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(b'{"op": "close"}\n')
                self._proc.stdin.flush()
                self._proc.stdin.close()
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        if not self._log.closed:
            self._log.close()


class LlamaProcessBackend:
    """Loads each model in a fresh worker; logs go to `log_dir/<model>.log`."""

    def __init__(self, log_dir: Path, data_dir: Path | None = None, spare_cores: int = 0) -> None:
        self.log_dir = log_dir
        self.data_dir = data_dir
        self.spare_cores = spare_cores
        """Cores left free for the caller (the app's event loop) when a model's n_threads
        is not pinned."""

    def load(self, spec: ModelSpec) -> LlamaProcessSession:
        path, info = check_model_file(spec, self.data_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        n_ctx = context_for(spec, info)
        layers, why = gpu_layers_for(spec, info, n_ctx)  # ModelError with the numbers if it can't fit
        log = self.log_dir / f"{spec.name}.log"
        # A GPU load can still fail for memory (other programs, driver overhead): retry with
        # half the layers, then on the CPU, and say so in the plan text.
        attempts = [layers] if layers == 0 else [layers, max(1, layers // 2), 0]
        for n, tried in enumerate(dict.fromkeys(attempts)):
            try:
                session = LlamaProcessSession(spec.model_copy(update={"n_gpu_layers": tried}),
                                              path, log, n_ctx, self.spare_cores)
            except ModelError as exc:
                if tried == 0 or n == len(attempts) - 1:
                    raise
                why = f"{why}; loading with {tried} GPU layers failed ({exc.message[:160]})"
                continue
            if tried != layers:
                why = f"{why}; running with {tried} GPU layers instead"
            session.info.details["gpu_plan"] = why
            return session
        raise AssertionError("unreachable")
