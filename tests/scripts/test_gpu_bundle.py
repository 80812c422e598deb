"""scripts/gpu_bundle.py and scripts/gpu_check(.py), without a GPU, a network or a compile:
the check stops with one line where there is no GPU, the bundle's size is refused over the
limit, a bundle that does not fit the machine is named, the bundled wheels are what the CLI
imports beyond the GPU machine's own packages, and a failing or hanging step is recorded
while the next one still runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import gpu_bundle  # noqa: E402
import gpu_check  # noqa: E402


def test_the_check_without_a_gpu_says_so_in_one_line(tmp_path: Path) -> None:
    bins = tmp_path / "bin"  # a PATH with python3 and the basics, and no nvidia-smi
    bins.mkdir()
    (bins / "python3").symlink_to(sys.executable)
    path = f"{bins}{os.pathsep}/usr/bin{os.pathsep}/bin"
    if shutil.which("nvidia-smi", path=path):
        pytest.skip("this machine has nvidia-smi")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check"), "--out", str(tmp_path / "out")],
                          env={"PATH": path, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2
    assert lines == ["gpu_check: no NVIDIA GPU here (nvidia-smi not found)"]
    assert not (tmp_path / "out").exists()


def test_the_size_is_refused_over_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.so").write_bytes(b"x" * 3000)
    (tmp_path / "manifest.json").write_bytes(b"y" * 1000)
    (tmp_path / "site" / "link.so").symlink_to("a.so")  # links do not travel: not counted
    assert gpu_bundle.folder_size(tmp_path) == 4000
    monkeypatch.setattr(gpu_bundle, "LIMIT", 5000)
    assert gpu_bundle.size_check(tmp_path, tree_bytes=1000) == (4000, None)
    size, refused = gpu_bundle.size_check(tmp_path, tree_bytes=1001)
    assert size == 4000 and refused is not None and "over the" in refused


def test_check_only_refuses_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bundle.tar.xz").write_bytes(b"z" * 2000)
    (tmp_path / "manifest.json").write_text(json.dumps({
        "bundle": {"file": "bundle.tar.xz", "bytes": 2000}, "llama_cpp_python": "0.3.36",
        "cuda_version": "13.0", "cuda_arch": "90", "python_version": "3.12"}))
    assert gpu_bundle.main(["--check-only", "--out", str(tmp_path)]) == 0
    assert "MiB of 64 MiB" in capsys.readouterr().out
    monkeypatch.setattr(gpu_bundle, "LIMIT", 1000)
    assert gpu_bundle.main(["--check-only", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpu_bundle: refused: bundle")


def test_a_bundle_that_does_not_fit_the_machine_is_named() -> None:
    manifest = {"cuda_arch": "90", "cuda_version": "13.0", "cublas_soname": "libcublas.so.13"}
    assert gpu_check.mismatch(manifest, "9.0", "libcublas.so.13", "13.0") is None
    assert gpu_check.mismatch(manifest, "8.0", "libcublas.so.13") == \
        "the bundle was built for sm_90 / CUDA 13, this machine has sm_80"
    assert "no libcublas.so.13 (found libcublas.so.12)" in gpu_check.mismatch(manifest, "9.0", "libcublas.so.12")
    assert "no libcublas.so.13 in" in gpu_check.mismatch(manifest, "9.0", None)
    assert "a driver for CUDA 12.4" in gpu_check.mismatch(manifest, "9.0", "libcublas.so.13", "12.4")


def test_the_bundled_wheels_are_what_the_cli_imports_beyond_the_machine() -> None:
    """Measured in a fresh process (run, review, doctor, the worker, bench_decode,
    shaped_gguf and every import outside the app), against WHEELS: none missing, none extra,
    and no Textual."""
    needed = gpu_bundle.imported_distributions()
    assert needed == set(gpu_bundle.WHEELS)
    assert "textual" not in needed


def test_a_failing_and_a_hanging_step_are_recorded_and_the_next_still_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_check, "MIN_STEP_S", 0.0)
    steps = gpu_check.Steps(60, tmp_path / "log", dict(os.environ))
    py = sys.executable
    assert steps.run("fails", [py, "-c", "print('bad'); raise SystemExit(3)"], 30) is None
    assert steps.run("hangs", [py, "-c", "import time; print('on', flush=True); time.sleep(60)"], 1) is None
    assert steps.run("works", [py, "-c", "print('{\"x\": 1}')"], 30) == '{"x": 1}\n'
    r = steps.results
    assert r["fails"]["rc"] == 3 and r["fails"]["tail"] == ["bad"]
    assert r["hangs"]["timed_out"] and r["hangs"]["tail"] == ["on"] and r["hangs"]["seconds"] < 10
    assert r["works"] == {"rc": 0, "seconds": r["works"]["seconds"], "timed_out": False}
    assert "===== hangs" in (tmp_path / "log").read_text()


def test_llama_cpp_buffers_are_read_from_the_last_load() -> None:
    load = ("llama_model_loader: loaded meta data with 30 key-value pairs\n"
            "load_tensors: offloaded {n}/25 layers to GPU\n"
            "load_tensors:        CUDA0 model buffer size =   {m} MiB\n"
            "load_tensors:   CPU_Mapped model buffer size =   137.94 MiB\n"
            "llama_kv_cache:      CUDA0 KV buffer size =   384.00 MiB\n"
            "sched_reserve:      CUDA0 compute buffer size =   298.50 MiB\n"
            "sched_reserve:  CUDA_Host compute buffer size =    20.01 MiB\n")
    fig = gpu_check.llama_log_figures(load.format(n=12, m=100.0) + load.format(n=25, m=215.50))
    assert fig["offloaded"] == "25/25"
    assert fig["gpu_mib"] == 898.0 and fig["host_mib"] == 158.0
    assert fig["buffers_mib"]["CUDA0"] == {"model": 215.5, "KV": 384.0, "compute": 298.5}


def test_the_check_unpacks_a_bundle_once(tmp_path: Path) -> None:
    (tmp_path / "site" / "pkg").mkdir(parents=True)
    (tmp_path / "site" / "pkg" / "__init__.py").write_text("X = 1\n")
    with tarfile.open(tmp_path / "bundle.tar.xz", "w:xz") as tar:
        tar.add(tmp_path / "site", arcname="site")
    manifest = {"bundle": {"file": "bundle.tar.xz", "sha256": f"test{os.getpid():08d}"}}
    site = gpu_check.unpack(tmp_path, manifest)
    try:
        assert (site / "pkg" / "__init__.py").read_text() == "X = 1\n"
        (tmp_path / "bundle.tar.xz").unlink()  # unpacked already: not read again
        assert gpu_check.unpack(tmp_path, manifest) == site
    finally:
        shutil.rmtree(site.parent)
