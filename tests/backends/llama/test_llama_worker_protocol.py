"""A real worker process fed lines that are not requests: each is answered with a protocol
error, and the worker goes on serving (it loads a model and closes cleanly after them)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from gra_local.backends.llama.childproc import worker_env

pytest.importorskip("llama_cpp")


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with (tmp_path / "worker.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gra_local.backends.llama.worker"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                env=worker_env())
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def ask(proc: subprocess.Popen[bytes], line: bytes) -> dict:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + b"\n")
    proc.stdin.flush()
    reply = proc.stdout.readline()
    assert reply, f"the worker died (exit {proc.wait()})"
    return orjson.loads(reply)


@pytest.mark.parametrize("line", [b"this is not json {", b'{"op": "load", "path": ', b"[1, 2]", b'"load"'],
                         ids=["garbage", "cut_short", "array", "string"])
def test_a_malformed_request_is_answered_and_the_worker_serves_on(
        worker: subprocess.Popen[bytes], tiny_gguf: Path, line: bytes) -> None:
    reply = ask(worker, line)
    assert reply["ok"] is False and reply["kind"] == "protocol"
    assert "malformed request line" in reply["error"]
    assert ask(worker, b'{"op": "nonsense"}') == {"ok": False, "kind": "protocol",
                                                  "error": "unknown op 'nonsense'"}
    loaded = ask(worker, orjson.dumps({"op": "load", "path": str(tiny_gguf), "n_ctx": 256,
                                       "n_gpu_layers": 0, "n_threads": 1}))
    assert loaded["ok"] is True and loaded["n_ctx"] == 256
    assert ask(worker, b'{"op": "close"}') == {"ok": True}
    assert worker.wait(timeout=10) == 0
