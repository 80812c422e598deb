"""The llama.cpp backend: one worker process per loaded model.

llama-cpp-python does not reliably free memory on close, and a crash in llama.cpp would
take the whole app down; a process per model makes unloading exact and crashes local.
The worker's stdout/stderr go to a log file, never to the user's terminal.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import orjson

from gra_local.core.backend import ChatRequest, ChatResult, LoadInfo
from gra_local.core.config import ModelSpec
from gra_local.core.errors import BackendError, ModelError
from gra_local.models.fit import context_for, gpu_layers_for
from gra_local.models.hardware import probe
from gra_local.models.parallel import plan_parallel
from gra_local.models.resolve import check_model_file

WAKE_S = 0.05
"""How often a waiting `chat_many` looks at its cancel event."""
RESIGNAL_S = 0.5
"""A cancelled call signals the worker again this often until it answers (a signal that
arrived before the worker read the request is lost with the previous call's flag)."""


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


def _result(reply: dict) -> ChatResult:
    return ChatResult(
        text=reply["text"],
        finish_reason=reply["finish_reason"],
        prompt_tokens=reply["prompt_tokens"],
        completion_tokens=reply["completion_tokens"],
        prompt_evaluated=reply.get("prompt_evaluated"),
        seconds=reply["seconds"],
        first_token_seconds=reply.get("first_token_seconds"),
    )


class LlamaProcessSession:
    """A model loaded in its own worker process."""

    def __init__(self, spec: ModelSpec, path: Path, log_path: Path, n_ctx: int,
                 spare_cores: int = 0, n_parallel: int = 1, kv_cells: int | None = None) -> None:
        self.spec = spec
        self.path = path
        self.on_partial: Callable[[str], None] | None = None
        """Receives the text generated so far, a few times a second, when requests ask."""
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")
        self._buffer = b""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gra_local.backends.llama.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        reply = self._call({
            "op": "load",
            "path": str(path),
            "n_ctx": n_ctx,
            "n_parallel": n_parallel,
            "kv_cells": kv_cells or n_ctx,
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
            n_parallel=reply.get("n_parallel", 1),
            details=reply.get("details", {}),
        )

    # --- the pipe ------------------------------------------------------------------------

    def _send(self, payload: dict) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(orjson.dumps(payload) + b"\n")
        self._proc.stdin.flush()

    def _readline(self, timeout: float | None) -> bytes | None:
        """The next line (b"" at end of file), or None when none came within `timeout`."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            if timeout is not None and os.name != "nt":
                ready, _, _ = select.select([fd], [], [], timeout)
                if not ready:
                    return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b""
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line + b"\n"

    def _died(self, loading: bool) -> BackendError | ModelError:
        code = self._proc.wait()
        self._log.close()
        tail = _log_tail(self.log_path)
        what = "loading" if loading else "running"
        return (ModelError if loading else BackendError)(
            f"model {self.spec.name!r}: worker process died while {what} (exit code {code}); "
            f"log {self.log_path}: {tail}"
        )

    def _failed(self, reply: dict, loading: bool) -> BackendError | ModelError:
        if loading:
            self.close()
            return ModelError(
                f"model {self.spec.name!r}: llama.cpp could not load {self.path}: "
                f"{reply.get('error')}; log {self.log_path}: {_log_tail(self.log_path, 3)}"
            )
        return BackendError(f"model {self.spec.name!r}: {reply.get('error')}")

    def _replies(self, payload: dict, loading: bool = False,
                 cancel: threading.Event | None = None) -> list[dict]:
        """Send one request; collect its reply lines up to the final one (ok/done or an
        error), passing partial text to `on_partial`. While `cancel` is set, the worker is
        signalled to end the call early."""
        lines: list[dict] = []
        signalled = 0.0
        can_signal = hasattr(signal, "SIGUSR1")
        try:
            self._send(payload)
            while True:
                if (cancel is not None and cancel.is_set() and can_signal
                        and time.monotonic() - signalled >= RESIGNAL_S):
                    self._proc.send_signal(signal.SIGUSR1)
                    signalled = time.monotonic()
                line = self._readline(WAKE_S if cancel is not None else None)
                if line is None:
                    continue
                if not line:
                    raise self._died(loading)
                reply = orjson.loads(line)
                if "partial" in reply:
                    if self.on_partial is not None:
                        self.on_partial(reply["partial"])
                    continue
                lines.append(reply)
                if "index" not in reply:
                    break
        except (BrokenPipeError, OSError):
            raise self._died(loading) from None
        final = lines[-1]
        if not final.get("ok"):
            raise self._failed(final, loading)
        return lines

    def _call(self, payload: dict, loading: bool = False) -> dict:
        return self._replies(payload, loading)[-1]

    # --- the Session protocol ------------------------------------------------------------

    def chat(self, request: ChatRequest) -> ChatResult:
        return _result(self._call({"op": "chat", **request.model_dump()}))

    def chat_many(self, requests: Sequence[ChatRequest],
                  cancel: threading.Event | None = None) -> list[ChatResult]:
        """Every request decoded in one worker call (up to `info.n_parallel` at a time);
        results in request order. Setting `cancel` ends the call soon, the unfinished
        requests marked "cancelled"."""
        if not requests:
            return []
        lines = self._replies({"op": "chat_many", "requests": [r.model_dump() for r in requests]},
                              cancel=cancel)
        results: dict[int, ChatResult] = {r["index"]: _result(r) for r in lines[:-1]}
        if sorted(results) != list(range(len(requests))):
            raise BackendError(f"model {self.spec.name!r}: the worker answered {len(results)} of "
                               f"{len(requests)} requests")
        return [results[i] for i in range(len(requests))]

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
        hw = probe()
        parallel = plan_parallel(spec, info, n_ctx, hw)  # ModelError for a pinned n_parallel that can't fit
        layers, why = gpu_layers_for(spec, info, n_ctx, hw, kv_cells=parallel.kv_cells)
        log = self.log_dir / f"{spec.name}.log"
        # A GPU load can still fail for memory (other programs, driver overhead): retry with
        # half the layers, then on the CPU, and say so in the plan text.
        attempts = [layers] if layers == 0 else [layers, max(1, layers // 2), 0]
        for n, tried in enumerate(dict.fromkeys(attempts)):
            try:
                session = LlamaProcessSession(spec.model_copy(update={"n_gpu_layers": tried}),
                                              path, log, n_ctx, self.spare_cores,
                                              parallel.n_parallel, parallel.kv_cells)
            except ModelError as exc:
                if tried == 0 or n == len(attempts) - 1:
                    raise
                why = f"{why}; loading with {tried} GPU layers failed ({exc.message[:160]})"
                continue
            if tried != layers:
                why = f"{why}; running with {tried} GPU layers instead"
            session.info.details["gpu_plan"] = why
            session.info.details["parallel_plan"] = parallel.reason
            return session
        raise AssertionError("unreachable")
