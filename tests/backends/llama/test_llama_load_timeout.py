"""A load that misses its deadline (LOAD_TIMEOUT_S, here shrunk through LOAD_TIMEOUT_ENV)
fails as any other load: a ModelError naming the model and the timeout, so a GPU attempt
falls back to fewer layers and then the CPU, and the CLI shows one line. The workers are
real: they are genuinely still starting (Python, llama_cpp's import, the load) when the
deadline passes, and are killed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE_SEEDS, write_models_toml
from procs import workers
from test_llama_process import Worker

from gra_local.backends.llama import process as llama_process
from gra_local.core.backend import ChatRequest
from gra_local.core.config import ModelSpec
from gra_local.core.errors import ModelError

pytest.importorskip("llama_cpp")

TOO_SHORT = "0.05"
"""Seconds: a worker cannot even import llama_cpp in this long."""


def test_a_cpu_load_past_its_timeout_is_a_one_line_model_error(
        tiny_worker: Worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(llama_process.LOAD_TIMEOUT_ENV, TOO_SHORT)
    with pytest.raises(ModelError) as failed:
        tiny_worker(n_gpu_layers=0)
    message = failed.value.message
    assert message.startswith("model 'tiny': ")
    assert f"did not load within the load timeout of {TOO_SHORT} s" in message
    assert "worker killed" in message and str(tmp_path / "tiny.log") in message
    assert "\n" not in message
    if sys.platform.startswith("linux"):
        assert workers(os.getpid()) == []  # killed and reaped, not left loading


def test_a_gpu_load_past_its_timeout_falls_back_to_the_cpu(
        tiny_worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU attempts (this machine has none; llama.cpp would ignore the layers) get a
    timeout too short to load in; the CPU attempt the normal one."""
    tried: list[int] = []
    real = llama_process.LlamaProcessSession

    def timed(spec: ModelSpec, *args: object) -> llama_process.LlamaProcessSession:
        tried.append(int(spec.n_gpu_layers))
        if spec.n_gpu_layers:
            monkeypatch.setenv(llama_process.LOAD_TIMEOUT_ENV, TOO_SHORT)
        else:
            monkeypatch.delenv(llama_process.LOAD_TIMEOUT_ENV, raising=False)
        return real(spec, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(llama_process, "gpu_layers_for", lambda spec, info, *args, **kw: (20, "plan: GPU"))
    monkeypatch.setattr(llama_process, "LlamaProcessSession", timed)
    session = tiny_worker()
    assert tried == [20, 10, 0]
    assert session.info.n_gpu_layers == 0
    plan = session.info.details["gpu_plan"]
    assert plan.startswith("plan: GPU; loading with 20 GPU layers failed (model 'tiny': ")
    assert f"did not load within the load timeout of {TOO_SHORT} s" in plan
    assert plan.endswith("running with 0 GPU layers instead")
    assert session.chat(ChatRequest(
        messages=[{"role": "user", "content": "hi"}], temperature=0.8, top_p=0.95,
        max_tokens=4, seed=1)).completion_tokens > 0


def test_the_cli_reports_a_load_timeout_in_one_line(tmp_path: Path, tiny_gguf: Path) -> None:
    models = write_models_toml(tmp_path / "models.toml", [("tiny", tiny_gguf)], "n_threads = 1")
    env = {**os.environ, llama_process.LOAD_TIMEOUT_ENV: TOO_SHORT}
    proc = subprocess.run([sys.executable, "-m", "gra_local.cli", "run", str(EXAMPLE_SEEDS),
                           "--out", str(tmp_path / "out"), "--models", str(models), "--samples", "2",
                           "--no-dedup", "--quiet"],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gra-local: error:")]
    assert len(errors) == 1 and errors == proc.stderr.strip().splitlines()[-1:], proc.stderr
    assert "model 'tiny': " in errors[0]
    assert f"did not load within the load timeout of {TOO_SHORT} s" in errors[0]
