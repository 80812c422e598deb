"""The hardware probe: parsers over captured text, and the real probe on this machine."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from gra_local.models import hardware
from gra_local.models.hardware import (
    GPU,
    Hardware,
    LlamaBuild,
    apple_working_set,
    gpu_backend_name,
    parse_cpuinfo_physical,
    parse_llama_probe,
    parse_meminfo,
    parse_nvidia_smi,
    parse_system_info,
    parse_vm_stat,
    probe,
)

GiB = 1 << 30
MiB = 1 << 20

MEMINFO = """\
MemTotal:       24683656 kB
MemFree:        23878360 kB
MemAvailable:   24124816 kB
Buffers:            8108 kB
Cached:           431308 kB
SwapCached:            0 kB
"""

MEMINFO_OLD_KERNEL = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 30 kB\n"

NVIDIA_SMI = """\
NVIDIA GeForce RTX 3060, 12288, 11012
NVIDIA A100-SXM4-80GB, 81920, 81221
"""

VM_STAT = """\
Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               12345.
Pages active:                            400000.
Pages inactive:                          100000.
Pages speculative:                         5000.
Pages wired down:                        150000.
"""

# what llama_print_system_info() returns (the CPU line verified on this machine's build)
SYSINFO_CPU = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
               "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ")
SYSINFO_CUDA = ("CUDA : ARCHS = 500,610,700,750,800,860,890 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | "
                + SYSINFO_CPU)
SYSINFO_METAL = "Metal : EMBED_LIBRARY = 1 | BF16 = 1 | CPU : NEON = 1 | ARM_FMA = 1 | ACCELERATE = 1 | "
SYSINFO_VULKAN = "Vulkan : " + SYSINFO_CPU
SYSINFO_OLD = "AVX = 1 | AVX2 = 1 | METAL = 0 | CUDA = 1 | VULKAN = 0 | BLAS = 1 | "

CPUINFO = "processor\t: 0\nphysical id\t: 0\ncore id\t\t: 0\n\nprocessor\t: 1\nphysical id\t: 0\ncore id\t\t: 0\n\n" \
          "processor\t: 2\nphysical id\t: 0\ncore id\t\t: 1\n\nprocessor\t: 3\nphysical id\t: 0\ncore id\t\t: 1\n"


def test_meminfo() -> None:
    assert parse_meminfo(MEMINFO) == (24683656 * 1024, 24124816 * 1024)
    assert parse_meminfo(MEMINFO_OLD_KERNEL) == (1000 * 1024, 150 * 1024)
    assert parse_meminfo("") == (0, 0)


def test_vm_stat() -> None:
    assert parse_vm_stat(VM_STAT) == (12345 + 100000 + 5000) * 16384


def test_nvidia_smi_csv() -> None:
    gpus = parse_nvidia_smi(NVIDIA_SMI)
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 3060", "NVIDIA A100-SXM4-80GB"]
    assert gpus[0].memory_total_bytes == 12288 * MiB and gpus[0].memory_free_bytes == 11012 * MiB
    na = parse_nvidia_smi("NVIDIA GH200, [N/A], [N/A]\n\ngarbage\n")
    assert len(na) == 1 and na[0].memory_free_bytes is None


@pytest.mark.parametrize(("text", "names", "backend"), [
    (SYSINFO_CPU, ["CPU"], "CPU"),
    (SYSINFO_CUDA, ["CUDA", "CPU"], "CUDA"),
    (SYSINFO_METAL, ["Metal", "CPU"], "Metal"),
    (SYSINFO_VULKAN, ["Vulkan", "CPU"], "Vulkan"),
    (SYSINFO_OLD, ["CUDA"], "CUDA"),
])
def test_system_info(text: str, names: list[str], backend: str) -> None:
    assert parse_system_info(text) == names
    assert gpu_backend_name(names, gpu_offload=False, system="Linux") == backend


def test_offload_without_a_known_name() -> None:
    assert gpu_backend_name(["CPU"], gpu_offload=True, system="Darwin") == "Metal"
    assert gpu_backend_name(["CPU"], gpu_offload=True, system="Linux") == "GPU"


def test_llama_probe_reply() -> None:
    build = parse_llama_probe(json.dumps({"version": "0.3.36", "gpu_offload": True,
                                          "system_info": SYSINFO_CUDA}), "Linux")
    assert (build.version, build.backend, build.gpu_offload) == ("0.3.36", "CUDA", True)


def test_cpuinfo_physical_cores() -> None:
    assert parse_cpuinfo_physical(CPUINFO) == 2
    assert parse_cpuinfo_physical("processor : 0\nBogoMIPS : 50\n") is None


def test_apple_working_set() -> None:
    assert apple_working_set(16 * GiB) == 16 * GiB * 2 // 3
    assert apple_working_set(64 * GiB) == 48 * GiB
    assert apple_working_set(16 * GiB, wired_limit_mb=14000) == 14000 * MiB


def _hw(llama: LlamaBuild | None, gpus: list[GPU]) -> Hardware:
    return Hardware(system="Linux", machine="x86_64", cpu_logical=4, ram_total_bytes=32 * GiB,
                    ram_available_bytes=30 * GiB, gpus=gpus, llama=llama)


def test_memory_facts() -> None:
    two = parse_nvidia_smi(NVIDIA_SMI)
    cuda = LlamaBuild(gpu_offload=True, backends=["CUDA", "CPU"], backend="CUDA")
    facts = _hw(cuda, two).memory_facts()
    assert facts.gpu_backend == "CUDA" and facts.gpu_count == 2
    assert facts.vram_free_bytes == (11012 + 81221) * MiB and not facts.unified
    cpu_build = _hw(LlamaBuild(), two).memory_facts()
    assert cpu_build.gpu_backend is None and "no GPU backend" in cpu_build.no_gpu_reason
    no_device = _hw(cuda.model_copy(update={"gpu_offload": False}), []).memory_facts()
    assert no_device.gpu_backend is None and "no CUDA device" in no_device.no_gpu_reason
    unprobed = _hw(None, two).memory_facts()
    assert unprobed.gpu_backend == "unknown" and unprobed.gpu_count == 2
    assert unprobed.vram_free_bytes == facts.vram_free_bytes  # the GPUs' memory is still known
    vulkan = _hw(LlamaBuild(gpu_offload=True, backend="Vulkan"), []).memory_facts()
    assert vulkan.gpu_backend == "Vulkan" and vulkan.vram_free_bytes is None
    apple = GPU(name="Apple M2 GPU", kind="apple", memory_total_bytes=10 * GiB,
                memory_free_bytes=9 * GiB, unified=True)
    metal = _hw(LlamaBuild(gpu_offload=True, backend="Metal"), [apple]).memory_facts()
    assert metal.unified and metal.vram_free_bytes == 9 * GiB


def test_probe_on_this_machine() -> None:
    """The probe and the planner's facts against what this machine says when asked here:
    os.cpu_count, /proc/meminfo's MemTotal, nvidia-smi's presence, and llama.cpp itself
    (imported in this process, apart from the probe's subprocess)."""
    hw = probe()
    assert hw.cpu_logical == (os.cpu_count() or 1)
    if sys.platform.startswith("linux"):
        mem_total_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                            if line.startswith("MemTotal:"))
        assert hw.ram_total_bytes == mem_total_kb * 1024
        assert 0 < hw.ram_available_bytes <= hw.ram_total_bytes
    assert hw.llama is not None
    assert hw.llama.version == importlib.metadata.version("llama-cpp-python")
    assert "CPU" in hw.llama.backends
    llama_cpp = pytest.importorskip("llama_cpp")
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    assert hw.llama.gpu_offload is offload
    if sys.platform.startswith("linux") and shutil.which("nvidia-smi") is None:
        assert hw.gpus == []  # no NVIDIA tool, no Apple GPU: nothing found
    facts = hw.memory_facts()
    assert facts.ram_total_bytes == hw.ram_total_bytes
    assert facts.ram_available_bytes == hw.ram_available_bytes
    if not offload:  # this project's test machine: a CPU build of llama.cpp
        # nothing to offload to: the planner gets no backend, no VRAM and the reason
        assert (facts.gpu_backend, facts.vram_total_bytes, facts.vram_free_bytes) == (None, None, None)
        assert facts.gpu_count == len([g for g in hw.gpus if not g.unified])
        if hw.llama.backend == "CPU":
            assert facts.no_gpu_reason == "this llama.cpp build has no GPU backend"
        else:
            assert facts.no_gpu_reason == (f"llama.cpp is built with {hw.llama.backend} but found "
                                           f"no {hw.llama.backend} device")
    else:  # a GPU build that found its device
        assert facts.gpu_backend == (hw.llama.backend if hw.llama.backend != "CPU" else "GPU")
        if hw.gpus and all(g.memory_free_bytes is not None for g in hw.gpus):
            assert facts.vram_free_bytes == sum(g.memory_free_bytes or 0 for g in hw.gpus)


def _fake_exe(folder: Path, name: str, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


@pytest.mark.skipif(os.name == "nt", reason="shell script stand-in")
def test_nvidia_smi_found_broken_or_hanging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    sleep = shutil.which("sleep")
    monkeypatch.setenv("PATH", str(bin_dir))
    _fake_exe(bin_dir, "nvidia-smi", f"printf '{NVIDIA_SMI}'\n")
    notes: list[str] = []
    assert [g.name for g in hardware._nvidia_gpus(notes)][0] == "NVIDIA GeForce RTX 3060"
    _fake_exe(bin_dir, "nvidia-smi", "echo 'NVIDIA-SMI has failed' >&2; exit 9\n")
    assert hardware._nvidia_gpus(notes) == [] and "failed" in notes[-1]
    _fake_exe(bin_dir, "nvidia-smi", f"exec {sleep} 5\n")
    monkeypatch.setattr(hardware, "NVIDIA_SMI_TIMEOUT", 0.3)
    assert hardware._nvidia_gpus(notes) == [] and "did not answer" in notes[-1]


def test_llama_probe_failure_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    build, note = hardware._llama_build_cached.__wrapped__("Linux")
    assert build is None and "could not start" in (note or "")
