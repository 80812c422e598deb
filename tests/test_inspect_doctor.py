"""`models inspect` and `doctor` run as command functions on tiny and broken GGUFs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from conftest import write_models_toml
from ggufs import write_corrupt_header_gguf, write_not_gguf, write_tiny_gguf, write_truncated_gguf

from gra_local.commands import inspect as cmd
from gra_local.core.errors import GraError
from gra_local.models.hardware import GPU, Hardware, LlamaBuild

GiB = 1 << 30


def fake_hw(gpu_free_gib: float | None = None, backend: str = "CPU") -> Hardware:
    gpus = [] if gpu_free_gib is None else [GPU(name="NVIDIA RTX 4060", kind="nvidia",
                                                memory_total_bytes=8 * GiB,
                                                memory_free_bytes=int(gpu_free_gib * GiB))]
    return Hardware(system="Linux", machine="x86_64", cpu_logical=4, cpu_physical=2,
                    ram_total_bytes=16 * GiB, ram_available_bytes=12 * GiB, gpus=gpus,
                    llama=LlamaBuild(version="0.3.36", gpu_offload=backend != "CPU",
                                     backends=[backend, "CPU"] if backend != "CPU" else ["CPU"],
                                     backend=backend, system_info=f"{backend} : X = 1 |"))


@pytest.fixture
def hw(monkeypatch: pytest.MonkeyPatch) -> Hardware:
    machine = fake_hw()
    monkeypatch.setattr(cmd, "probe", lambda: machine)
    return machine


def inspect(target: object, **kw: object) -> int:
    args = argparse.Namespace(target=str(target), ctx=kw.get("ctx"), json=kw.get("json", False),
                              models=kw.get("models"))
    return cmd.inspect_command(args)


def doctor(**kw: object) -> int:
    return cmd.doctor_command(argparse.Namespace(json=kw.get("json", False), models=kw.get("models")))


def one_line_error(target: object, *needles: str, **kw: object) -> str:
    with pytest.raises(GraError) as info:
        inspect(target, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_inspect_a_path(tiny_gguf: Path, hw: Hardware, capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect(tiny_gguf) == 0
    out = capsys.readouterr().out
    for needle in ("architecture     llama", "layers           1", "heads            2 (KV heads 2)",
                   "chat template    yes (chatml)", "vocabulary       356", "tokenizer        llama",
                   "file type        F32", "memory at n_ctx 2048:", "plan: CPU only"):
        assert needle in out, out
    assert len([ln for ln in out.splitlines() if ln.strip().startswith("sha256")][0].split()[1]) == 64


def test_inspect_json_parses(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cmd, "probe", lambda: fake_hw(6.0, "CUDA"))
    assert inspect(tiny_gguf, json=True, ctx=1024) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["architecture"] == "llama" and data["block_count"] == 1 and data["vocab_size"] == 356
    assert data["memory"]["n_ctx"] == 1024 and data["memory"]["kv_bytes"] == 2 * 1 * 1024 * 2 * 16 * 2
    assert data["plan"]["where"] == "gpu" and data["plan"]["n_gpu_layers"] == 2 and data["fit"] == "GPU 2/2"
    assert data["chat_template"] is True and data["chat_template_family"] == "chatml"


def test_inspect_a_registered_name(tmp_path: Path, tiny_gguf: Path, hw: Hardware,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    models = write_models_toml(tmp_path / "models.toml", [("tiny", tiny_gguf)])
    assert inspect("tiny", models=models, json=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "tiny" and data["memory"]["n_ctx"] == 2048  # the registry's n_ctx
    one_line_error("nope", "no model of that name", "tiny", models=models)


def test_inspect_bad_inputs(tmp_path: Path, hw: Hardware) -> None:
    one_line_error(tmp_path / "missing.gguf", "model file not found")
    one_line_error(write_not_gguf(tmp_path / "page.gguf"), "not a GGUF file")
    one_line_error(write_truncated_gguf(tmp_path / "cut.gguf"), "truncated")
    one_line_error(write_corrupt_header_gguf(tmp_path / "bad.gguf"), "corrupt GGUF header")
    one_line_error("some-name", "no registry")


def test_inspect_without_chat_template(tmp_path: Path, hw: Hardware, capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect(write_tiny_gguf(tmp_path / "plain.gguf", chat_template=None)) == 0
    assert "chat template    no: set chat_format" in capsys.readouterr().out


def test_doctor_without_a_registry(hw: Hardware, capsys: pytest.CaptureFixture[str]) -> None:
    assert doctor() == 1
    out = capsys.readouterr().out
    assert "llama.cpp: llama-cpp-python 0.3.36, backend CPU" in out
    assert "RAM: 16.0 GiB total, 12.0 GiB available" in out
    assert "no models registered" in out and "fix: run `gra-local models pull-default`" in out
    assert "(not created yet)" in out


def test_doctor_reports_each_model_and_its_fix(tmp_path: Path, tiny_gguf: Path, hw: Hardware,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    models = write_models_toml(tmp_path / "models.toml", [
        ("tiny", tiny_gguf), ("gone", tmp_path / "gone.gguf"),
        ("page", write_not_gguf(tmp_path / "page.gguf"))])
    assert doctor(models=models) == 1
    out = capsys.readouterr().out
    assert "tiny" in out and "ok: F32" in out and "CPU only" in out
    assert "gone" in out and "unusable" in out
    assert out.count("fix:") == 2 and f"correct its path in {models}, or `gra-local models remove gone`" in out
    assert doctor(models=models, json=True) == 1
    data = json.loads(capsys.readouterr().out)
    assert [m["usable"] for m in data["models"]] == [True, False, False]
    assert data["models"][0]["plan"]["where"] == "cpu"
    assert all(p["fix"] for p in data["problems"]) and len(data["problems"]) == 2


def test_doctor_names_the_gpu_fix(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cmd, "probe", lambda: fake_hw(7.0, "CPU"))  # NVIDIA GPU, CPU-only build
    models = write_models_toml(tmp_path / "models.toml", [("tiny", tiny_gguf)])
    assert doctor(models=models, json=True) == 1
    data = json.loads(capsys.readouterr().out)
    assert "CPU-only build" in data["problems"][0]["problem"]
    assert "packaging/install-llama.sh cuda" in data["problems"][0]["fix"]
    assert "-DGGML_CUDA=on" in data["problems"][0]["fix"]
    monkeypatch.setattr(cmd, "probe", lambda: fake_hw(7.0, "CUDA"))
    assert doctor(models=models) == 0
    out = capsys.readouterr().out
    assert "all 2 layers on GPU (CUDA)" in out and "no problems found" in out


def test_doctor_on_this_machine(tmp_path: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = write_models_toml(tmp_path / "models.toml", [("tiny", tiny_gguf)])
    doctor(models=models, json=True)
    data = json.loads(capsys.readouterr().out)  # nothing but the JSON on stdout
    assert data["llama_cpp"]["version"] and data["hardware"]["ram_total_bytes"] > 0
    assert data["models"][0]["usable"] is True
