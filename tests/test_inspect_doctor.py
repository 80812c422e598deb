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
from gra_local.models.parallel import SEQ_CELLS, kv_cells_for

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
                   "file type        F32", "memory at n_ctx 2048:", "plan: CPU only",
                   "parallel: 8 sequence(s), 16384 KV cells, KV cache 2 MiB: 8 sequences share 16384 KV cells",
                   f"about {SEQ_CELLS} a sequence", "the default maximum on a CPU build"):
        assert needle in out, out
    assert kv_cells_for(8, 2048) == 16384  # 8 sequences x SEQ_CELLS, at 128 bytes a cell: 2 MiB
    assert "at n_ctx 2048, 16384 KV cells)" in out  # the estimate holds the larger cache
    assert len([ln for ln in out.splitlines() if ln.strip().startswith("sha256")][0].split()[1]) == 64


def test_inspect_json_parses(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cmd, "probe", lambda: fake_hw(6.0, "CUDA"))
    assert inspect(tiny_gguf, json=True, ctx=1024) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["architecture"] == "llama" and data["block_count"] == 1 and data["vocab_size"] == 356
    # the memory estimate is made at the parallel plan's KV cache: 16 sequences x SEQ_CELLS cells
    assert kv_cells_for(16, 1024) == 16 * SEQ_CELLS == 32768
    assert data["memory"]["n_ctx"] == 1024 and data["memory"]["kv_cells"] == 32768
    assert data["memory"]["kv_bytes"] == 2 * 1 * 32768 * 2 * 16 * 2
    assert data["plan"]["where"] == "gpu" and data["plan"]["n_gpu_layers"] == 2 and data["fit"] == "GPU 2/2"
    par = data["parallel"]
    assert (par["n_parallel"], par["kv_cells"], par["kv_bytes"]) == (16, 32768, data["memory"]["kv_bytes"])
    assert par["n_ctx"] == 1024 and par["pinned"] is False and par["refused"] is None
    assert "the default maximum with a GPU backend" in par["reason"]
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


def test_inspect_shows_a_pinned_parallel_plan_and_its_refusal(
        tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    models = write_models_toml(tmp_path / "models.toml", [("tiny", tiny_gguf)], extra="n_parallel = 3")
    monkeypatch.setattr(cmd, "probe", lambda: fake_hw(6.0, "CUDA"))
    assert inspect("tiny", models=models) == 0
    out = capsys.readouterr().out
    assert kv_cells_for(3, 2048) == 3 * SEQ_CELLS == 6144
    assert "parallel: 3 sequence(s), 6144 KV cells" in out and "pinned in models.toml: 3 sequences" in out
    # a pinned value whose cache cannot fit: shown as the run would refuse it, the rest still shown
    models = write_models_toml(tmp_path / "models.toml", [("tiny", tiny_gguf)], extra="n_parallel = 64")
    small = fake_hw().model_copy(update={"ram_available_bytes": 100 << 20})  # 1 fits, 64 do not
    monkeypatch.setattr(cmd, "probe", lambda: small)
    assert inspect("tiny", models=models, json=True) == 0
    par = json.loads(capsys.readouterr().out)["parallel"]
    assert par["n_parallel"] == 1 and par["kv_cells"] == kv_cells_for(1, 2048) == 2048
    assert "model 'tiny': n_parallel = 64 cannot fit" in par["refused"]
    assert inspect("tiny", models=models) == 0
    assert "parallel: refused: model 'tiny': n_parallel = 64 cannot fit" in capsys.readouterr().out
    assert doctor(models=models) == 1
    out = capsys.readouterr().out
    assert "tiny" in out and "refused" in out and "lower n_parallel" in out


def test_models_list_badge_counts_the_parallel_cache(tmp_path: Path, tiny_gguf: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from gra_local.commands import models as models_cmd

    # 1 GiB + 100 MiB free VRAM: 100 MiB usable after the reserve
    monkeypatch.setattr(models_cmd, "probe", lambda: fake_hw(1 + 100 / 1024, "CUDA"))
    auto = write_models_toml(tmp_path / "auto.toml", [("tiny", tiny_gguf)])
    assert models_cmd.list_command(argparse.Namespace(models=auto)) == 0
    assert "fit: GPU 2/2" in capsys.readouterr().out  # auto never pushes a layer off the GPU
    pinned = write_models_toml(tmp_path / "pinned.toml", [("tiny", tiny_gguf)], extra="n_parallel = 64")
    assert models_cmd.list_command(argparse.Namespace(models=pinned)) == 0
    out = capsys.readouterr().out  # 64 sequences' cache (~530 MiB) does not fit the 100 MiB
    assert "fit: CPU;" in out, out  # one 16 MiB layer + the 512 MiB compute buffer of 131072 cells
