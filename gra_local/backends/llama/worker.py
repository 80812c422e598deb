"""Runs inside a worker process: owns one llama-cpp-python `Llama` and its `Decoder`.

Protocol: one JSON object per line. Requests arrive on stdin; replies leave on a private
copy of the original stdout. File descriptor 1 is then pointed at stderr, which the parent
sends to a log file, so nothing llama.cpp prints can reach the user's terminal or corrupt
the protocol.

Requests:  {"op": "load", "path", "n_ctx", "n_parallel", "kv_cells", "n_gpu_layers",
            "n_threads", "spare_cores", "chat_format", "seed"}
           {"op": "chat_many", "requests": [{"messages", "temperature", "top_p",
            "max_tokens", "seed", "repeat_penalty", "grammar", "stream_partials",
            "min_room", "probe_after"}, ...]}
           {"op": "score_many", "requests": [{"messages", "baseline", "response"}, ...]}
           {"op": "close"}
Replies:   {"ok": true, ...} or {"ok": false, "error": "...", "kind": "..."}; "chat_many"
           answers {"index": i, <result>} for each request as it finishes, then
           {"ok": true, "done": true}. A result carries "choices": [{"offset", "probs"}]
           at the positions "probe_after" asked for (decode.Decoder._probe). While a
           request with "stream_partials" runs, lines {"partial": text, "index": i} (a
           few a second) may come before any reply;
           {"tick": true, "running": share, "tokens": n} comes about once a second while
           a call decodes: the running requests' share of their token budgets made, and
           their tokens so far (decode.Decoder.in_flight).
           "score_many" answers {"index": i, <result>} the same way, a result with the
           fields of core.backend.ScoreResult (scoring.Scored), then {"ok": true,
           "done": true}; it samples nothing and streams no partials.
Cancel:    SIGUSR1 ends the running call soon (its unfinished requests "cancelled").
Too long:  every prompt is tokenized before decoding starts; one whose tokens plus
           "min_room" (default: max_tokens) exceed the context one sequence may use is
           answered at once with finish_reason "too_long" (text "", completion_tokens 0,
           prompt_tokens its real length), and the call's other requests decode normally
           (decode.Decoder.run).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from typing import Any, BinaryIO

import orjson

from gra_local.backends.llama.threads import ThreadGovernor, default_threads, max_threads

TICK_S = 1.0
"""A running call sends {"tick": true} at most this often (liveness for the parent)."""


class _LogStream:
    """sys.stderr in the worker: the log (in the run directory) is best effort. On a full
    disk or past a file size limit its writes fail; that must not kill the model, which
    the parent would count as a crash: the run's own files report the disk error."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        try:
            return int(self._inner.write(text))
        except (OSError, ValueError):
            return len(text)

    def flush(self) -> None:
        try:
            self._inner.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _open_protocol_channel() -> BinaryIO:
    proto_fd = os.dup(1)
    os.dup2(2, 1)  # stray C-level prints go to the log, not the protocol
    sys.stderr = _LogStream(sys.stderr)
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "wb", buffering=0)


class Worker:
    def __init__(self, channel: BinaryIO | None = None) -> None:
        self.llm: Any = None
        self.decoder: Any = None
        self.gpu_layers = 0
        self.scorer: Any = None
        """scoring.PairScorer, made by the first "score_many"."""
        self.channel = channel
        self.cancel_requested = False
        """Set by the SIGUSR1 handler; the decode loop checks it every step."""
        self._ticked = time.monotonic()

    def _send(self, obj: dict) -> None:
        if self.channel is not None:
            try:
                self.channel.write(orjson.dumps(obj) + b"\n")
            except OSError:  # the parent is gone (killed): nobody will read another line
                _orphaned()

    def load(self, req: dict) -> dict:
        import llama_cpp

        from gra_local.backends.llama.decode import Decoder
        from gra_local.backends.llama.prompt import load_llama

        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        layers = req.get("n_gpu_layers", "auto")
        if layers == "auto":
            layers = -1 if gpu else 0
        n_ctx = int(req["n_ctx"])
        n_parallel = int(req.get("n_parallel") or 1)
        spare = int(req.get("spare_cores", 0))
        pinned = req.get("n_threads")
        low = int(pinned) if pinned else max(1, default_threads() - spare)
        high = int(pinned) if pinned else max(1, max_threads() - spare)
        start = time.perf_counter()
        self.llm = load_llama(
            req["path"],
            kv_cells=int(req.get("kv_cells") or n_ctx),
            n_parallel=n_parallel,
            n_gpu_layers=int(layers),
            n_threads=low,
            chat_format=req.get("chat_format"),
            seed=int(req.get("seed", 0)),
        )
        self.decoder = Decoder(self.llm, n_parallel, n_ctx)
        self.gpu_layers = int(layers)
        ctx = self.llm._ctx.ctx
        self.decoder.governor = ThreadGovernor(
            low, high, lambda n: llama_cpp.llama_set_n_threads(ctx, n, n))
        return {
            "ok": True,
            "seconds": time.perf_counter() - start,
            "n_gpu_layers": int(layers),
            "n_ctx": self.decoder.n_ctx,
            "n_parallel": n_parallel,
            "gpu_offload": gpu,
            "details": {
                "n_ctx_train": int(self.llm._model.n_ctx_train()),
                "kv_cells": self.decoder.n_cells,
                "n_threads": low,
                "n_threads_max": high if self.decoder.governor.active else low,
                "llama_cpp_python": llama_cpp.__version__,
                "chat_format": self.llm.chat_format,
            },
        }

    def _job(self, req: dict) -> Any:
        from gra_local.backends.llama.jobs import Job
        from gra_local.backends.llama.prompt import chat_prompt

        tokens, stop = chat_prompt(self.llm, req["messages"])
        return Job(tokens=tokens, stop=stop, max_tokens=int(req["max_tokens"]),
                   temperature=float(req["temperature"]), top_p=float(req["top_p"]),
                   seed=int(req["seed"]), repeat_penalty=float(req.get("repeat_penalty", 1.0)),
                   grammar=req.get("grammar") or None, stream_partials=bool(req.get("stream_partials")),
                   min_room=int(req.get("min_room") or 0),
                   probe_after=[str(p).encode("utf-8") for p in req.get("probe_after") or []])

    def chat_many(self, req: dict) -> dict:
        self.cancel_requested = False  # a late signal for the previous call (the parent resends)
        jobs = [self._job(r) for r in req["requests"]]
        if any(r.get("fresh_cache") for r in req["requests"]):
            self.decoder.clear()  # a stage's first call: nothing decoded before it is reused
        self.decoder.run(
            jobs, cancelled=self._poll,
            on_done=lambda index, outcome: self._send({"index": index, **vars(outcome)}),
            on_partial=lambda index, text: self._send({"partial": text, "index": index}))
        return {"ok": True, "done": True}

    def score_many(self, req: dict) -> dict:
        from gra_local.backends.llama.scoring import PairScorer

        self.cancel_requested = False
        if self.scorer is None:
            self.scorer = PairScorer(self.decoder, exact=self.gpu_layers == 0)
        self.scorer.run(req["requests"], cancelled=self._poll,
                        on_done=lambda index, scored: self._send({"index": index, **vars(scored)}))
        return {"ok": True, "done": True}

    def _poll(self) -> bool:
        """Asked every decode step (and between graph nodes of a long one): whether to stop;
        also sends a tick at most every TICK_S, so the parent can tell a slow call from a
        stopped or stuck worker."""
        now = time.monotonic()
        if now - self._ticked >= TICK_S:
            self._ticked = now
            share, tokens = self.decoder.in_flight() if self.decoder is not None else (0.0, 0)
            self._send({"tick": True, "running": round(share, 3), "tokens": tokens})
        return self.cancel_requested


def _orphaned() -> None:
    """Exit at once, from anywhere (even llama.cpp's abort callback): a worker whose parent
    died must not go on decoding, nor spin retrying a step it cannot report."""
    os._exit(3)


def _fail(kind: str, exc: BaseException) -> dict:
    traceback.print_exc(file=sys.stderr)
    return {"ok": False, "kind": kind, "error": f"{type(exc).__name__}: {exc}"}


def _request(line: bytes) -> dict | None:
    """The request a line holds; None for one that is not a JSON object."""
    try:
        req = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return req if isinstance(req, dict) else None


def main() -> None:
    # Ctrl-C in the terminal reaches the whole process group; the parent decides when to
    # stop, and this worker finishes its current call first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = _open_protocol_channel()
    worker = Worker(channel)
    if hasattr(signal, "SIGUSR1"):
        def on_cancel(signum: int, frame: object) -> None:
            worker.cancel_requested = True

        signal.signal(signal.SIGUSR1, on_cancel)
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        req = _request(line)
        if req is None:  # answered, as a call that failed: the parent raises, the worker serves on
            worker._send({"ok": False, "kind": "protocol",
                          "error": f"malformed request line {line[:80]!r}: not a JSON object"})
            continue
        op = req.get("op")
        if op == "close":
            channel.write(orjson.dumps({"ok": True}) + b"\n")
            break
        try:
            if op == "load":
                reply = worker.load(req)
            elif op == "chat_many":
                reply = worker.chat_many(req)
            elif op == "score_many":
                reply = worker.score_many(req)
            else:
                reply = {"ok": False, "kind": "protocol", "error": f"unknown op {op!r}"}
        except Exception as exc:  # reported to the parent, which raises a typed error
            reply = _fail(op or "unknown", exc)
        worker._send(reply)
        sys.stderr.flush()
    # Exit without running llama.cpp destructors: freeing can crash on some builds, and
    # the OS reclaims everything (the reason a model lives in its own process).
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
