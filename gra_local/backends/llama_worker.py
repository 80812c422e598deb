"""Runs inside a worker process: owns one llama-cpp-python `Llama`.

Protocol: one JSON object per line. Requests arrive on stdin; replies leave on a private
copy of the original stdout. File descriptor 1 is then pointed at stderr, which the parent
sends to a log file, so nothing llama.cpp prints can reach the user's terminal or corrupt
the protocol.

Requests:  {"op": "load", "path", "n_ctx", "n_gpu_layers", "n_threads", "chat_format", "seed"}
           {"op": "chat", "messages", "temperature", "top_p", "max_tokens", "seed", "grammar"}
           {"op": "close"}
Replies:   {"ok": true, ...} or {"ok": false, "error": "...", "kind": "..."}
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from typing import Any, BinaryIO


def _open_protocol_channel() -> BinaryIO:
    proto_fd = os.dup(1)
    os.dup2(2, 1)  # stray C-level prints go to the log, not the protocol
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "wb", buffering=0)


def default_threads() -> int:
    """All cores on small machines; about the physical cores (half the logical ones) on
    larger ones, where hyper-threads slow llama.cpp's decode down."""
    cores = os.cpu_count() or 1
    return cores if cores <= 4 else cores // 2


class Worker:
    def __init__(self) -> None:
        self.llm: Any = None
        self.grammars: dict[str, Any] = {}
        self._first_eval: int | None = None

    # Count the tokens of the first eval() of each call: llama-cpp-python evaluates the
    # prompt minus the prefix it reuses from the previous call in one eval, then one token
    # at a time, so the first eval's length is "prompt tokens actually evaluated".
    def _install_eval_counter(self) -> None:
        original = self.llm.eval

        def counting_eval(tokens: Any) -> Any:
            if self._first_eval is None:
                self._first_eval = len(tokens)
            return original(tokens)

        self.llm.eval = counting_eval

    def load(self, req: dict) -> dict:
        import llama_cpp

        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        layers = req.get("n_gpu_layers", "auto")
        if layers == "auto":
            layers = -1 if gpu else 0
        start = time.perf_counter()
        self.llm = llama_cpp.Llama(
            model_path=req["path"],
            n_ctx=int(req["n_ctx"]),
            n_gpu_layers=int(layers),
            n_threads=req.get("n_threads") or default_threads(),
            chat_format=req.get("chat_format"),
            seed=int(req.get("seed", 0)),
            verbose=True,  # goes to the log file: load errors stay diagnosable
        )
        self._install_eval_counter()
        n_ctx_train = int(self.llm._model.n_ctx_train())
        return {
            "ok": True,
            "seconds": time.perf_counter() - start,
            "n_gpu_layers": int(layers),
            "n_ctx": int(self.llm.n_ctx()),
            "gpu_offload": gpu,
            "details": {
                "n_ctx_train": n_ctx_train,
                "llama_cpp_python": llama_cpp.__version__,
                "chat_format": self.llm.chat_format,
            },
        }

    def _grammar(self, text: str | None) -> Any:
        if not text:
            return None
        if text not in self.grammars:
            from llama_cpp import LlamaGrammar

            self.grammars[text] = LlamaGrammar.from_string(text, verbose=False)
        return self.grammars[text]

    def chat(self, req: dict) -> dict:
        self._first_eval = None
        start = time.perf_counter()
        out = self.llm.create_chat_completion(
            messages=req["messages"],
            temperature=float(req["temperature"]),
            top_p=float(req["top_p"]),
            max_tokens=int(req["max_tokens"]),
            seed=int(req["seed"]),
            repeat_penalty=float(req.get("repeat_penalty", 1.0)),
            grammar=self._grammar(req.get("grammar")),
        )
        choice = out["choices"][0]
        usage = out.get("usage", {})
        return {
            "ok": True,
            "text": choice["message"].get("content") or "",
            "finish_reason": choice.get("finish_reason") or "stop",
            "prompt_tokens": int(usage.get("prompt_tokens", 0)),
            "completion_tokens": int(usage.get("completion_tokens", 0)),
            "prompt_evaluated": self._first_eval if self._first_eval is not None else 0,
            "seconds": time.perf_counter() - start,
        }


def _fail(kind: str, exc: BaseException) -> dict:
    traceback.print_exc(file=sys.stderr)
    return {"ok": False, "kind": kind, "error": f"{type(exc).__name__}: {exc}"}


def main() -> None:
    # Ctrl-C in the terminal reaches the whole process group; the parent decides when to
    # stop, and this worker finishes its current call first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import orjson

    channel = _open_protocol_channel()
    worker = Worker()
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        req = orjson.loads(line)
        op = req.get("op")
        if op == "close":
            channel.write(orjson.dumps({"ok": True}) + b"\n")
            break
        try:
            if op == "load":
                reply = worker.load(req)
            elif op == "chat":
                reply = worker.chat(req)
            else:
                reply = {"ok": False, "kind": "protocol", "error": f"unknown op {op!r}"}
        except Exception as exc:  # reported to the parent, which raises a typed error
            reply = _fail(op or "unknown", exc)
        channel.write(orjson.dumps(reply) + b"\n")
        sys.stderr.flush()
    # Exit without running llama.cpp destructors: freeing can crash on some builds, and
    # the OS reclaims everything (the reason a model lives in its own process).
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
