"""A worker that stops answering or dies (issue 12, item 2), on real llama.cpp workers and a
tiny GGUF: every call has a deadline and a silence limit, a stuck worker is killed and the
call raises WorkerLost (the run then restarts it: tests/core/engine/test_model_pool.py);
the worker gets a minimal environment. Workers start with conftest's `tiny_worker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_llama_process import Worker

from gra_local.backends.llama import process as llama_process
from gra_local.backends.llama.process import worker_env
from gra_local.core.backend import ChatRequest
from gra_local.core.errors import WorkerLost


def request(user: str, max_tokens: int = 16) -> ChatRequest:
    """A short call with no system prompt: its deadline is simple to work out."""
    return ChatRequest(messages=[{"role": "user", "content": user}], temperature=0.8, top_p=0.95,
                       max_tokens=max_tokens, seed=1)


def test_a_stopped_worker_is_killed_after_its_silence_limit(tiny_worker: Worker,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRA_LOCAL_STALL_S", "1.5")  # read when the session starts
    session = tiny_worker()
    assert session.chat(request("warm up")).completion_tokens > 0
    os.kill(session._proc.pid, signal.SIGSTOP)  # as a machine swapping to death, or a debugger
    start = time.monotonic()
    with pytest.raises(WorkerLost, match="gave no sign of life for 2 s; worker killed"):
        session.chat(request("anyone there?"))
    assert time.monotonic() - start < 10
    assert session._proc.poll() is not None  # killed, not left stopped
    with pytest.raises(WorkerLost):  # the session is dead: every later call says so at once
        session.chat(request("again?"))


def test_a_call_past_its_deadline_is_killed(tiny_worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama_process, "CALL_FLOOR_S", 1.0)
    session = tiny_worker()
    session.chat(request("measure my speed"))
    assert session._rate is not None and session._rate > 0
    deadline, why = session._deadline_for([request("x", max_tokens=64)])
    assert deadline == pytest.approx(max(1.0, llama_process.SLACK * (64 + 17) / session._rate), rel=0.2)
    assert "1 request(s)" in why
    os.kill(session._proc.pid, signal.SIGSTOP)  # silence limit 60 s: the deadline comes first
    with pytest.raises(WorkerLost, match=r"missed its deadline of \d+ s \(1 request\(s\)"):
        session.chat(request("x", max_tokens=2))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV], ids=["SIGKILL", "SIGSEGV"])
def test_a_crashed_worker_names_the_signal(tiny_worker: Worker, sig: signal.Signals) -> None:
    session = tiny_worker()
    os.kill(session._proc.pid, sig)
    session._proc.wait()
    with pytest.raises(WorkerLost, match=rf"worker process died while running \(killed by {sig.name}\)"):
        session.chat(request("hello"))


def test_a_worker_that_ignores_a_cancel_is_killed(tiny_worker: Worker,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama_process, "CANCEL_GRACE_S", 0.5)
    session = tiny_worker()
    os.kill(session._proc.pid, signal.SIGSTOP)
    cancel = threading.Event()
    cancel.set()  # a pause or a stop
    start = time.monotonic()
    with pytest.raises(WorkerLost, match="did not stop within"):
        session.chat_many([request("hello")], cancel)
    assert time.monotonic() - start < 5


def test_closing_mid_call_kills_at_once(tiny_worker: Worker) -> None:
    """A second Ctrl-C lands inside a call: close must not wait for the worker's answer."""
    session = tiny_worker()
    os.kill(session._proc.pid, signal.SIGSTOP)
    caller = threading.Thread(target=lambda: pytest.raises(WorkerLost, session.chat, request("x")),
                              daemon=True)
    caller.start()
    time.sleep(0.3)
    start = time.monotonic()
    session.close()
    assert time.monotonic() - start < 5 and session._proc.poll() is not None
    caller.join(timeout=5)


def test_the_worker_gets_a_minimal_environment(tiny_worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    env = worker_env({"PATH": "/bin", "HOME": "/h", "AWS_SECRET_ACCESS_KEY": "s", "OPENAI_API_KEY": "k",
                      "GITHUB_TOKEN": "t", "CUDA_VISIBLE_DEVICES": "0", "LC_ALL": "C.UTF-8",
                      "GGML_CUDA_NO_PINNED": "1", "GRA_LOCAL_STALL_S": "5", "SSH_AUTH_SOCK": "/s"})
    assert env == {"PATH": "/bin", "HOME": "/h", "CUDA_VISIBLE_DEVICES": "0", "LC_ALL": "C.UTF-8",
                   "GGML_CUDA_NO_PINNED": "1", "GRA_LOCAL_STALL_S": "5", "PYTHONUNBUFFERED": "1"}
    if not sys.platform.startswith("linux"):
        return
    monkeypatch.setenv("GRA_TEST_SECRET_TOKEN", "do-not-pass")
    session = tiny_worker()
    seen = Path(f"/proc/{session._proc.pid}/environ").read_bytes().split(b"\0")
    assert not any(item.startswith(b"GRA_TEST_SECRET_TOKEN=") for item in seen)
    assert any(item.startswith(b"PATH=") for item in seen)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_whose_parent_was_killed_exits(tmp_path: Path) -> None:
    """kill -9 of gra-local mid-call: its worker notices at its next tick (the pipe is
    broken) and exits, instead of decoding on or spinning on a step it cannot report."""
    from ggufs import write_tiny_gguf
    from procs import workers

    endless = write_tiny_gguf(tmp_path / "endless.gguf", eos_bias=-20.0)
    parent = subprocess.Popen([sys.executable, "-c", f"""
import sys
from pathlib import Path
from gra_local.backends.llama.process import LlamaProcessBackend
from gra_local.core.backend import ChatRequest
from gra_local.core.config import ModelSpec
s = LlamaProcessBackend(log_dir=Path({str(tmp_path)!r})).load(
    ModelSpec(name="e", path={str(endless)!r}, n_ctx=2048))
print("loaded", flush=True)
s.chat(ChatRequest(messages=[{{"role": "user", "content": "go"}}], temperature=0.8, top_p=0.95,
                   max_tokens=2000, seed=1))
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "loaded"
        (worker,) = workers(parent.pid)
        time.sleep(0.5)  # mid-call
    finally:
        parent.kill()
        parent.wait()
    for _ in range(100):
        if not Path(f"/proc/{worker}").exists() or "zombie" in _state(worker):
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists() or "zombie" in _state(worker)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"
