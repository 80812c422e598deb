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

from gra_local.backends.llama.childproc import exit_text, log_tail, worker_env
from gra_local.core.backend import ChatRequest, ChatResult, LoadInfo, ScoreRequest, ScoreResult, TokenChoice
from gra_local.core.config import ModelSpec
from gra_local.core.errors import BackendError, ModelError, WorkerLost
from gra_local.core.rundir import files
from gra_local.models.fit import context_for, gpu_layers_for
from gra_local.models.hardware import probe
from gra_local.models.parallel import plan_parallel
from gra_local.models.resolve import check_model_file

WAKE_S = 0.05
"""How often a waiting `chat_many` looks at its cancel event."""
RESIGNAL_S = 0.5
"""A cancelled call signals the worker again this often until it answers (a signal that
arrived before the worker read the request is lost with the previous call's flag)."""

# Deadlines. A running call sends a tick about once a second (worker.py), so a worker that
# stops answering (SIGSTOP, a deadlock, a machine swapping to death) shows as silence; a
# worker that ticks but never finishes shows as a missed deadline. Either way it is killed
# and the call fails with WorkerLost (the run restarts the worker, waves.py).
STALL_FLOOR_S = 60.0
"""Silence tolerated during a call, at least: a single decode step of a long prompt chunk
on a slow CPU can take tens of seconds, and the worker ticks only between graph nodes.
The environment variable STALL_ENV sets another (`stall_floor_s`)."""
STALL_ENV = "GRA_LOCAL_STALL_S"
SLACK = 4.0
"""Deadlines are this many times what the measured speed predicts."""
CALL_FLOOR_S = 120.0
"""No call's deadline is shorter."""
FIRST_RATE = 2.0
"""Tokens a second assumed before a session has measured its own (a slow CPU's 8B model
decodes about that): a generous first deadline; silence still catches a stopped worker."""
LOAD_TIMEOUT_S = 900.0
"""Loading (reading weights, allocating, warming up) gets this long (LOAD_TIMEOUT_ENV sets
another); a load past it fails as any other (ModelError), so the CPU is tried next."""
LOAD_TIMEOUT_ENV = "GRA_LOCAL_LOAD_TIMEOUT_S"
CLOSE_WAIT_S = 5.0
"""An idle worker exits at once when asked; one that has not after this long is killed."""
CANCEL_GRACE_S = 15.0
"""A cancelled call (pause, stop) that has not answered after this long is killed."""


def stall_floor_s() -> float:
    """STALL_FLOOR_S, or the seconds STALL_ENV gives (the fault drill and tests shorten it);
    read when a session starts, never at import."""
    return float(os.environ.get(STALL_ENV) or STALL_FLOOR_S)


def _result(reply: dict) -> ChatResult:
    choices = [TokenChoice(offset=c["offset"], probs=c["probs"]) for c in reply.get("choices") or []]
    return ChatResult(text=reply["text"], finish_reason=reply["finish_reason"],
                      prompt_tokens=reply["prompt_tokens"], completion_tokens=reply["completion_tokens"],
                      prompt_evaluated=reply.get("prompt_evaluated"), seconds=reply["seconds"],
                      first_token_seconds=reply.get("first_token_seconds"), choices=choices)


def _score_tokens(request: ScoreRequest) -> int:
    """Tokens a scored pair decodes, counted generously (a token per 2 bytes)."""
    return (len(orjson.dumps(request.messages)) + len(orjson.dumps(request.baseline))
            + 2 * len(request.response.encode("utf-8"))) // 2


class LlamaProcessSession:
    """A model loaded in its own worker process."""

    def __init__(self, spec: ModelSpec, path: Path, log_path: Path, n_ctx: int,
                 spare_cores: int = 0, n_parallel: int = 1, kv_cells: int | None = None) -> None:
        self.spec = spec
        self.path = path
        self.on_partial: Callable[[str], None] | None = None  # text so far, when requests ask
        self.on_result: Callable[[int, int], None] | None = None  # (index, tokens) per result
        self.on_progress: Callable[[float, int], None] | None = None  # the worker's tick: in flight
        self.log_path = log_path
        self._log: IO[bytes] = os.fdopen(files.open_fd(log_path, os.O_WRONLY | os.O_APPEND), "ab")
        self._buffer = b""
        self.lost: WorkerLost | None = None
        """Set once the worker died or was killed: every later call raises it."""
        self._busy = False
        self._rate: float | None = None
        """The slowest tokens (prompt evaluated + generated) a wall second a call has
        managed in this session; None before the first call."""
        self._score_rate: float | None = None
        """The same for `score_many`, in the tokens its deadline counts (`_score_tokens`)."""
        self._longest_gap = 0.0
        """The longest silence seen in a call that then answered (a long prompt step)."""
        self._stall_floor_s = stall_floor_s()
        self._proc = subprocess.Popen([sys.executable, "-m", "gra_local.backends.llama.worker"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, env=worker_env())
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
        }, loading=True, deadline_s=float(os.environ.get(LOAD_TIMEOUT_ENV) or LOAD_TIMEOUT_S))
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
        tail = log_tail(self.log_path)
        what = "loading" if loading else "running"
        message = (f"model {self.spec.name!r}: worker process died while {what} "
                   f"({exit_text(code)}); log {self.log_path}: {tail}")
        if loading:
            return ModelError(message)
        self.lost = WorkerLost(message)
        return self.lost

    def _kill(self, why: str) -> WorkerLost:
        """Kill a worker that missed its deadline; the error the call raises."""
        self._proc.kill()
        self._proc.wait()
        if not self._log.closed:
            self._log.close()
        self.lost = WorkerLost(f"model {self.spec.name!r}: {why}; worker killed; log {self.log_path}")
        return self.lost

    def _timed_out(self, deadline_s: float) -> ModelError:
        """Kill a worker whose load missed its deadline: a load failure (`load` falls back)."""
        self._kill("load timeout")
        return ModelError(f"model {self.spec.name!r}: {self.path} did not load within the load "
                          f"timeout of {deadline_s:g} s ({LOAD_TIMEOUT_ENV}); worker killed; "
                          f"log {self.log_path}")

    def _deadline_for(self, requests: Sequence[ChatRequest]) -> tuple[float, str]:
        """Seconds a call may take: SLACK × its tokens (prompt, counted generously as a
        token per 2 bytes, plus the whole token budget) at the slowest speed measured so
        far, at least CALL_FLOOR_S."""
        tokens = sum(len(orjson.dumps(r.messages)) // 2 + r.max_tokens for r in requests)
        rate = self._rate or FIRST_RATE
        seconds = max(CALL_FLOOR_S, SLACK * tokens / rate)
        return seconds, f"{len(requests)} request(s), up to {tokens} tokens at {rate:.1f} tok/s"

    def _failed(self, reply: dict, loading: bool) -> BackendError | ModelError:
        if loading:
            self.close()
            return ModelError(
                f"model {self.spec.name!r}: llama.cpp could not load {self.path}: "
                f"{reply.get('error')}; log {self.log_path}: {log_tail(self.log_path, 3)}"
            )
        return BackendError(f"model {self.spec.name!r}: {reply.get('error')}")

    def _replies(self, payload: dict, loading: bool = False,
                 cancel: threading.Event | None = None, deadline_s: float | None = None,
                 why: str = "") -> list[dict]:
        """Send one request; collect its reply lines up to the final one (ok/done or an
        error), passing partial text to `on_partial`. While `cancel` is set, the worker is
        signalled to end the call early. A worker that misses `deadline_s`, falls silent
        for longer than a call's steps take, or ignores a cancel is killed (WorkerLost)."""
        if self.lost is not None:
            raise self.lost
        lines: list[dict] = []
        signalled = first_signal = 0.0
        can_signal = hasattr(signal, "SIGUSR1")
        start = last = time.monotonic()
        stall_s = max(self._stall_floor_s, SLACK * self._longest_gap)
        gap = 0.0
        self._busy = True
        finished = False
        try:
            self._send(payload)
            while True:
                now = time.monotonic()
                if cancel is not None and cancel.is_set() and can_signal:
                    first_signal = first_signal or now
                    if now - first_signal > CANCEL_GRACE_S:
                        raise self._kill(f"did not stop within {CANCEL_GRACE_S:.0f} s of a cancel")
                    if now - signalled >= RESIGNAL_S:
                        self._proc.send_signal(signal.SIGUSR1)
                        signalled = now
                wait = WAKE_S if cancel is not None else 1.0
                if deadline_s is not None:
                    if now - start > deadline_s:
                        raise self._timed_out(deadline_s) if loading else self._kill(
                            f"missed its deadline of {deadline_s:.0f} s ({why})")
                    wait = min(wait, start + deadline_s - now + 0.01)
                if not loading and now - last > stall_s:
                    raise self._kill(f"gave no sign of life for {now - last:.0f} s")
                line = self._readline(wait)
                if line is None:
                    continue
                if not line:
                    raise self._died(loading)
                gap, last = max(gap, time.monotonic() - last), time.monotonic()
                reply = orjson.loads(line)
                if "tick" in reply:
                    if self.on_progress is not None and "running" in reply:
                        self.on_progress(float(reply["running"]), int(reply.get("tokens") or 0))
                    continue
                if "partial" in reply:
                    if self.on_partial is not None:
                        self.on_partial(reply["partial"])
                    continue
                lines.append(reply)
                if "index" not in reply:
                    break
                if self.on_result is not None and reply.get("finish_reason") != "cancelled":
                    self.on_result(int(reply["index"]), int(reply.get("completion_tokens")
                                                            or reply.get("response_tokens") or 0))
            finished = True
        except (BrokenPipeError, OSError):
            raise self._died(loading) from None
        finally:
            self._busy = False
            if not finished and self.lost is None and self._proc.poll() is None:
                # left mid-call (a second Ctrl-C): its answer would reach nobody, and the
                # worker may not even be listening (stopped, stuck): it goes now
                self._kill("left mid-call")
        if not loading:
            self._longest_gap = max(self._longest_gap, gap)
        final = lines[-1]
        if not final.get("ok"):
            raise self._failed(final, loading)
        return lines

    def _call(self, payload: dict, loading: bool = False, deadline_s: float | None = None) -> dict:
        return self._replies(payload, loading, deadline_s=deadline_s)[-1]

    def _measured(self, results: Sequence[ChatResult], seconds: float) -> None:
        tokens = sum((r.prompt_evaluated if r.prompt_evaluated is not None else r.prompt_tokens)
                     + r.completion_tokens for r in results if r.finish_reason != "cancelled")
        if tokens and seconds > 0:
            rate = tokens / seconds
            self._rate = rate if self._rate is None else min(self._rate, rate)

    # --- the Session protocol ------------------------------------------------------------

    def chat(self, request: ChatRequest) -> ChatResult:
        return self.chat_many([request])[0]

    def chat_many(self, requests: Sequence[ChatRequest],
                  cancel: threading.Event | None = None) -> list[ChatResult]:
        """Every request decoded in one worker call (up to `info.n_parallel` at a time);
        results in request order. Setting `cancel` ends the call soon, the unfinished
        requests marked "cancelled"."""
        if not requests:
            return []
        deadline, why = self._deadline_for(requests)
        start = time.monotonic()
        lines = self._replies({"op": "chat_many", "requests": [r.model_dump() for r in requests]},
                              cancel=cancel, deadline_s=deadline, why=why)
        results: dict[int, ChatResult] = {r["index"]: _result(r) for r in lines[:-1]}
        if sorted(results) != list(range(len(requests))):
            raise BackendError(f"model {self.spec.name!r}: the worker answered {len(results)} of "
                               f"{len(requests)} requests")
        ordered = [results[i] for i in range(len(requests))]
        self._measured(ordered, time.monotonic() - start)
        return ordered

    def score_many(self, requests: Sequence[ScoreRequest],
                   cancel: threading.Event | None = None) -> list[ScoreResult]:
        """`core.backend.Scorer`: every request scored in one worker call (up to
        `info.n_parallel` pairs at a time, scoring.py); results in request order. Setting
        `cancel` ends the call soon, the unfinished marked "cancelled". As `chat_many`,
        raises WorkerLost when the worker died or missed its deadline (the caller then goes
        without the evidence): no result says "error" itself."""
        if not requests:
            return []
        tokens = sum(_score_tokens(r) for r in requests)
        rate = self._score_rate or self._rate or FIRST_RATE
        deadline = max(CALL_FLOOR_S, SLACK * tokens / rate)
        why = f"scoring {len(requests)} pair(s), about {tokens} tokens at {rate:.1f} tok/s"
        start = time.monotonic()
        lines = self._replies({"op": "score_many", "requests": [r.model_dump() for r in requests]},
                              cancel=cancel, deadline_s=deadline, why=why)
        results = {r["index"]: ScoreResult.model_validate(r) for r in lines[:-1]}
        if sorted(results) != list(range(len(requests))):
            raise BackendError(f"model {self.spec.name!r}: the worker scored {len(results)} of "
                               f"{len(requests)} requests")
        seconds = time.monotonic() - start
        if seconds > 0 and not any(r.finish_reason == "cancelled" for r in results.values()):
            rate = tokens / seconds
            self._score_rate = rate if self._score_rate is None else min(self._score_rate, rate)
        return [results[i] for i in range(len(requests))]

    def close(self) -> None:
        """Ask the worker to exit; one that does not within CLOSE_WAIT_S (stopped, stuck) or
        that is mid-call is killed, and so is it when a Ctrl-C cuts the wait short."""
        try:
            if self._busy and self._proc.poll() is None:  # interrupted mid-call: its answer is lost
                self._proc.kill()
            if self._proc.poll() is None:
                try:
                    assert self._proc.stdin is not None
                    self._proc.stdin.write(b'{"op": "close"}\n')
                    self._proc.stdin.flush()
                    self._proc.stdin.close()
                    self._proc.wait(timeout=CLOSE_WAIT_S)
                except (OSError, subprocess.TimeoutExpired):
                    self._proc.kill()
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            if not self._log.closed:
                self._log.close()


class LlamaProcessBackend:
    """Loads each model in a fresh worker; logs go to `log_dir/<model>.log`."""

    def __init__(self, log_dir: Path, data_dir: Path | None = None, spare_cores: int = 0,
                 probe_speed: bool = True) -> None:
        self.log_dir = log_dir
        self.data_dir = data_dir
        self.spare_cores = spare_cores  # left free for the app's event loop (n_threads unpinned)
        self.probe_speed = probe_speed  # time a first load (speed.py); `models bench` times itself

    def load(self, spec: ModelSpec) -> LlamaProcessSession:
        path, info = check_model_file(spec, self.data_dir)
        files.make_dir(self.log_dir)  # a symlink planted there is refused, never followed
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
            if self.probe_speed:
                from gra_local.backends.llama.speed import attach_speed  # it imports this module
                attach_speed(spec, path, session)
            return session
        raise AssertionError("unreachable")
