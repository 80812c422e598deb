"""What this machine offers a model: cores, RAM, GPUs with their memory, llama.cpp's backend.

No third-party probes: /proc/meminfo (Linux), sysctl + vm_stat (macOS), GlobalMemoryStatusEx
(Windows), ``nvidia-smi`` for NVIDIA GPUs, and a short subprocess that imports llama_cpp so
its C-level prints never reach the caller's terminal.  Every failure becomes a note.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from functools import lru_cache

from pydantic import BaseModel, Field

from gra_local.models.planner import MemoryFacts, gib

MiB = 1 << 20
NVIDIA_SMI_QUERY = ["--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"]
NVIDIA_SMI_TIMEOUT = 5
LLAMA_PROBE_TIMEOUT = 20

# backend registry names llama.cpp prints (``NAME : FEATURE = value | …``) -> our name
GPU_BACKENDS = {
    "CUDA": "CUDA", "ROCm": "ROCm", "HIP": "ROCm", "MUSA": "MUSA", "Metal": "Metal", "MTL": "Metal",
    "Vulkan": "Vulkan", "SYCL": "SYCL", "OpenCL": "OpenCL", "CANN": "CANN", "Kompute": "Kompute",
    "WebGPU": "WebGPU",
}
# older llama.cpp printed flags instead: "CUDA = 1 | METAL = 0 | VULKAN = 1 | …"
_OLD_FLAGS = {"CUDA": "CUDA", "CUBLAS": "CUDA", "HIPBLAS": "ROCm", "METAL": "Metal",
              "VULKAN": "Vulkan", "SYCL": "SYCL", "KOMPUTE": "Kompute", "CLBLAST": "OpenCL"}


class GPU(BaseModel):
    name: str
    kind: str
    """"nvidia" (nvidia-smi) or "apple" (unified memory)."""
    memory_total_bytes: int | None = None
    memory_free_bytes: int | None = None
    unified: bool = False


class LlamaBuild(BaseModel):
    version: str | None = None
    gpu_offload: bool = False
    """llama_supports_gpu_offload(): a GPU backend was built in and found a device."""
    backends: list[str] = Field(default_factory=list)
    """Backends named by llama_print_system_info(), e.g. ["CUDA", "CPU"]."""
    backend: str = "CPU"
    """The GPU backend built in ("CUDA", "Metal", "Vulkan", …) or "CPU"."""
    system_info: str = ""


class Hardware(BaseModel):
    system: str
    machine: str
    cpu_logical: int
    cpu_physical: int | None = None
    ram_total_bytes: int = 0
    ram_available_bytes: int = 0
    gpus: list[GPU] = Field(default_factory=list)
    llama: LlamaBuild | None = None
    notes: list[str] = Field(default_factory=list)

    def gpu_backend(self) -> tuple[str | None, str]:
        """(the backend llama.cpp would offload to, or None; why None)."""
        b = self.llama
        if b is None:
            if self.gpus:  # build unknown: plan for the GPU; a CPU build ignores offloading
                return "unknown", ""
            return None, "the llama.cpp build could not be probed and no GPU was found"
        if b.gpu_offload:
            return (b.backend if b.backend != "CPU" else "GPU"), ""
        if b.backend != "CPU":
            return None, f"llama.cpp is built with {b.backend} but found no {b.backend} device"
        return None, "this llama.cpp build has no GPU backend"

    def memory_facts(self) -> MemoryFacts:
        backend, why = self.gpu_backend()
        if backend == "Metal":
            usable = [g for g in self.gpus if g.unified]
        else:
            usable = [g for g in self.gpus if not g.unified]
        known = [g for g in usable if g.memory_free_bytes is not None]
        if backend and known and len(known) == len(usable):
            total = sum(g.memory_total_bytes or 0 for g in known)
            free: int | None = sum(g.memory_free_bytes or 0 for g in known)
        else:
            total, free = None, None  # offloading with unknown memory (Vulkan on AMD, …)
        return MemoryFacts(
            ram_total_bytes=self.ram_total_bytes, ram_available_bytes=self.ram_available_bytes,
            gpu_backend=backend, no_gpu_reason=why or "no GPU backend",
            vram_total_bytes=total, vram_free_bytes=free,
            unified=bool(usable) and all(g.unified for g in usable), gpu_count=len(usable),
        )


# ---- parsers (pure, tested with fixtures) ----

def parse_meminfo(text: str) -> tuple[int, int]:
    """(total, available) bytes from /proc/meminfo."""
    kb: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"(\w+):\s+(\d+)\s*kB", line)
        if m:
            kb[m.group(1)] = int(m.group(2))
    total = kb.get("MemTotal", 0) * 1024
    if "MemAvailable" in kb:
        avail = kb["MemAvailable"]
    else:  # kernels before 3.14
        avail = kb.get("MemFree", 0) + kb.get("Buffers", 0) + kb.get("Cached", 0)
    return total, avail * 1024


def parse_vm_stat(text: str) -> int:
    """Available bytes from macOS ``vm_stat``: free + inactive + speculative pages."""
    m = re.search(r"page size of (\d+) bytes", text)
    page = int(m.group(1)) if m else 4096
    pages = 0
    for key in ("Pages free", "Pages inactive", "Pages speculative"):
        m = re.search(rf"^{key}:\s+(\d+)", text, re.MULTILINE)
        if m:
            pages += int(m.group(1))
    return pages * page


def parse_nvidia_smi(text: str) -> list[GPU]:
    """Lines of ``name, total MiB, free MiB`` ("[N/A]" memory stays unknown)."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3 or not parts[0]:
            continue

        def mib(s: str) -> int | None:
            return int(float(s) * MiB) if re.fullmatch(r"\d+(\.\d+)?", s) else None

        gpus.append(GPU(name=parts[0], kind="nvidia", memory_total_bytes=mib(parts[1]),
                        memory_free_bytes=mib(parts[2])))
    return gpus


def parse_system_info(text: str) -> list[str]:
    """Backend names from llama_print_system_info(), e.g. "CUDA : ARCHS = 890 | … | CPU : …"."""
    # a backend without features prints only its name: "Vulkan : CPU : SSE3 = 1 | …"
    names = re.findall(r"([A-Za-z][A-Za-z0-9_-]*) :(?:\s|$)", text)
    for flag, name in _OLD_FLAGS.items():
        if re.search(rf"(?:^|\|)\s*{flag} = 1\b", text) and name not in names:
            names.append(name)
    return list(dict.fromkeys(names))


def gpu_backend_name(backends: list[str], gpu_offload: bool, system: str) -> str:
    for name in backends:
        if name in GPU_BACKENDS:
            return GPU_BACKENDS[name]
    if gpu_offload:  # offloads but printed no known name
        return "Metal" if system == "Darwin" else "GPU"
    return "CPU"


def parse_cpuinfo_physical(text: str) -> int | None:
    """Distinct (physical id, core id) pairs; None where /proc/cpuinfo lacks them (ARM)."""
    cores: set[tuple[str, str]] = set()
    phys = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            phys = value.strip()
        elif key == "core id":
            cores.add((phys or "0", value.strip()))
    return len(cores) or None


# ---- probes (each returns its notes, never raises) ----

def _run(cmd: list[str], timeout: float) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"exit code {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:200]}")
    return proc.stdout


def _sysctl(name: str) -> str:
    return _run(["sysctl", "-n", name], 5).strip()


def _ram(system: str, notes: list[str]) -> tuple[int, int]:
    try:
        if system == "Linux":
            with open("/proc/meminfo", encoding="ascii", errors="replace") as f:
                return parse_meminfo(f.read())
        if system == "Darwin":
            return int(_sysctl("hw.memsize")), parse_vm_stat(_run(["vm_stat"], 5))
        if system == "Windows":
            return _windows_ram()
        notes.append(f"RAM: no probe for {system}")
    except Exception as exc:
        notes.append(f"RAM: probe failed ({type(exc).__name__}: {exc})")
    return 0, 0


def _windows_ram() -> tuple[int, int]:
    import ctypes

    class MEMORYSTATUSEX(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

    stat = MEMORYSTATUSEX()
    stat.dwLength = ctypes.sizeof(MEMORYSTATUSEX)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(stat)):  # type: ignore[attr-defined]
        raise OSError("GlobalMemoryStatusEx failed")
    return int(stat.ullTotalPhys), int(stat.ullAvailPhys)


def _physical_cores(system: str) -> int | None:
    try:
        if system == "Linux":
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                return parse_cpuinfo_physical(f.read())
        if system == "Darwin":
            return int(_sysctl("hw.physicalcpu"))
    except Exception:
        pass  # optional detail
    return None


def _nvidia_gpus(notes: list[str]) -> list[GPU]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        gpus = parse_nvidia_smi(_run([exe, *NVIDIA_SMI_QUERY], NVIDIA_SMI_TIMEOUT))
    except subprocess.TimeoutExpired:
        notes.append(f"nvidia-smi did not answer in {NVIDIA_SMI_TIMEOUT} s: NVIDIA GPUs unknown")
        return []
    except Exception as exc:
        notes.append(f"nvidia-smi failed ({exc}); is the NVIDIA driver loaded?")
        return []
    if any(g.memory_free_bytes is None for g in gpus):
        notes.append("nvidia-smi reports no memory figures for some GPU")
    return gpus


def apple_working_set(ram_total: int, wired_limit_mb: int = 0) -> int:
    """GPU-usable share of unified memory: the iogpu.wired_limit_mb override when set,
    else Metal's default recommended working set (about 2/3 of RAM, 3/4 above 36 GiB)."""
    if wired_limit_mb > 0:
        return wired_limit_mb * MiB
    return ram_total * 3 // 4 if ram_total > 36 * (1 << 30) else ram_total * 2 // 3


def _apple_gpu(ram_total: int, ram_available: int, notes: list[str]) -> list[GPU]:
    try:
        name = _sysctl("machdep.cpu.brand_string") or "Apple Silicon"
    except Exception:
        name = "Apple Silicon"
    limit = 0
    try:
        limit = int(_sysctl("iogpu.wired_limit_mb") or 0)
    except Exception:
        pass  # older macOS: no such key
    ws = apple_working_set(ram_total, limit)
    notes.append(f"Apple unified memory: GPU working set taken as {gib(ws)} of {gib(ram_total)} RAM")
    return [GPU(name=f"{name} GPU", kind="apple", memory_total_bytes=ws,
                memory_free_bytes=min(ws, ram_available), unified=True)]


_LLAMA_PROBE = r"""
import json, os, sys
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
import llama_cpp
info = {"version": getattr(llama_cpp, "__version__", None)}
info["gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
s = llama_cpp.llama_print_system_info()
info["system_info"] = s.decode("utf-8", "replace") if isinstance(s, bytes) else str(s)
out.write(json.dumps(info))
out.flush()
os._exit(0)
"""


def parse_llama_probe(stdout: str, system: str) -> LlamaBuild:
    data = json.loads(stdout)
    text = data.get("system_info") or ""
    backends = parse_system_info(text)
    offload = bool(data.get("gpu_offload"))
    return LlamaBuild(version=data.get("version"), gpu_offload=offload, backends=backends,
                      backend=gpu_backend_name(backends, offload, system), system_info=text.strip())


@lru_cache(maxsize=1)
def _llama_build_cached(system: str) -> tuple[LlamaBuild | None, str | None]:
    try:
        proc = subprocess.run([sys.executable, "-c", _LLAMA_PROBE], capture_output=True, text=True,
                              timeout=LLAMA_PROBE_TIMEOUT, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"llama.cpp probe did not finish in {LLAMA_PROBE_TIMEOUT} s"
    except OSError as exc:
        return None, f"llama.cpp probe could not start ({exc})"
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return None, (f"llama-cpp-python cannot be imported ({tail}); reinstall it with "
                      "scripts/setup")
    try:
        return parse_llama_probe(proc.stdout, system), None
    except (ValueError, TypeError) as exc:
        return None, f"llama.cpp probe answered nonsense ({exc})"


def llama_build(notes: list[str]) -> LlamaBuild | None:
    """llama.cpp's build, probed once per process in a subprocess."""
    build, note = _llama_build_cached(platform.system())
    if note:
        notes.append(note)
    return build


def probe(llama: bool = True) -> Hardware:
    """Probe this machine; ``llama=False`` skips the llama.cpp subprocess (~1 s once)."""
    notes: list[str] = []
    system, machine = platform.system(), platform.machine()
    total, avail = _ram(system, notes)
    gpus = _nvidia_gpus(notes)
    if system == "Darwin" and machine == "arm64":
        gpus += _apple_gpu(total, avail, notes)
    build = llama_build(notes) if llama else None
    if build and build.backend in ("Vulkan", "ROCm", "SYCL", "OpenCL") and not gpus:
        notes.append(f"{build.backend} GPU memory cannot be measured here: all layers are offloaded; "
                     "pin n_gpu_layers in models.toml if loading fails")
    return Hardware(system=system, machine=machine, cpu_logical=os.cpu_count() or 1,
                    cpu_physical=_physical_cores(system), ram_total_bytes=total,
                    ram_available_bytes=avail, gpus=gpus, llama=build, notes=notes)
