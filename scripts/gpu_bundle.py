"""Build, here, everything a lent GPU machine needs to run gra-local on CUDA (issue 23).

The GPU machine (sm_90, CUDA 13 driver, x86_64, Python 3.12) reaches no package registry;
what it gets travels with the working tree, 64 MiB in all. So the CUDA build of llama.cpp
and the wheels the machine lacks are made here, packed as one `.gpu-bundle/bundle.tar.xz`
(stdlib tarfile: python3 alone unpacks it) beside a `manifest.json`.

    .venv/bin/python scripts/gpu_bundle.py [--build-dir DIR] [--python-version 3.12]
                                           [--gather-only] [--check-only]

Steps, each skipped when done already (a killed build resumes where ninja stopped): the
llama-cpp-python sdist pinned in pyproject.toml, unpacked; nvidia-cublas 13 (headers, link
libraries: the toolkit here has none); a stub libcuda.so (no driver here); cmake; `ninja
llama ggml-cuda`. Then: the sdist's `llama_cpp` with the built libraries as real stripped
files under the loader's names, and the cp312 wheels in WHEELS + NEWER, unpacked.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / ".gpu-bundle"
MiB = 1 << 20
LIMIT = 64 * MiB  # tree plus carried bundle, at most (what a device run carries)
CUDA_ARCH = "90"

DEVICE_HAS = ("numpy", "jinja2", "httpx", "rich", "pytest", "pyyaml", "tqdm", "scipy",
              "tokenizers", "threadpoolctl", "typing-extensions", "torch", "nvidia-cublas")  # the machine's
WHEELS = ("annotated-types", "datasketch", "diskcache", "gguf", "orjson", "platformdirs",
          "pydantic", "pydantic-core", "tomli-w", "typing-inspection")
"""What the CLI (run, review, doctor, models inspect), the worker, llama_cpp and the bench
scripts import that the machine lacks (no textual): `imported_distributions` measures it."""
NEWER = ("typing-extensions",)  # pydantic 2.14 needs >= 4.16, maybe newer than the machine's
ENTRY_MODULES = ("gra_local.cli", "gra_local.commands.run", "gra_local.commands.inspect",
                 "gra_local.commands.models", "gra_local.prepare", "gra_local.backends.llama.worker",
                 "gra_local.backends.llama.process", "llama_cpp", "bench_decode", "shaped_gguf")
SCRIPTS_USED = ("bench_decode.py", "benchlib.py", "shaped_gguf.py", "private_dirs.py", "gpu_check.py")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")
LOADED_BY_NAME = ("libllama.so", "libggml.so")  # from llama_cpp/lib, by name (llama_cpp.py, _ggml.py)
SYSTEM_LIBS = ("libc.so", "libm.so", "libdl.so", "libpthread.so", "librt.so", "libstdc++.so",
               "libgcc_s.so", "libgomp.so", "ld-linux")


def step(text: str) -> None:
    print(f"gpu_bundle: {text}", flush=True)


class Refused(Exception):
    """One line for the user, exit 1."""


def pinned_version(pyproject: Path = REPO / "pyproject.toml") -> str:
    if not (m := re.search(r'^\s*"llama-cpp-python==([\w.]+)"', pyproject.read_text(encoding="utf-8"), re.M)):
        raise Refused(f"{pyproject} pins no llama-cpp-python==VERSION")
    return m.group(1)


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess:
    step("$ " + " ".join(map(str, cmd)))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)  # type: ignore[call-overload]


class Layout:
    """The persistent build folder (the /tmp/s11 layout)."""

    def __init__(self, root: Path, version: str) -> None:
        self.root, self.version = root, version
        self.sdist, self.src = root / f"llama_cpp_python-{version}.tar.gz", root / f"llama_cpp_python-{version}"
        self.cublas, self.stub = root / "cublas" / "nvidia" / "cu13", root / "stubs" / "libcuda.so"
        self.build, self.log = root / "build", root / "build.log"
        self.bin, self.wheels, self.stage = self.build / "bin", root / "wheels", root / "stage"


def cmake_args(lay: Layout) -> list[str]:
    c = lay.cublas
    return ["cmake", "-S", str(lay.src), "-B", str(lay.build), "-G", "Ninja",
            "-DCMAKE_BUILD_TYPE=Release", "-DLLAVA_BUILD=OFF", "-DGGML_CUDA=ON",
            f"-DCMAKE_CUDA_ARCHITECTURES={CUDA_ARCH}", "-DGGML_NATIVE=OFF", "-DGGML_AVX=ON",
            "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_SERVER=OFF",
            f"-DCUDA_cublas_LIBRARY={c}/lib/libcublas.so", f"-DCUDA_cublasLt_LIBRARY={c}/lib/libcublasLt.so",
            f"-DCMAKE_CUDA_FLAGS=-I{c}/include", f"-DCMAKE_CXX_FLAGS=-I{c}/include",
            f"-DCUDA_cuda_driver_LIBRARY={lay.stub}"]


def ninja_running_in(build: Path) -> int | None:
    """The pid of a ninja working in `build` (never start a second compile there)."""
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if (proc / "comm").read_text().strip() == "ninja" and (proc / "cwd").resolve() == build.resolve():
                return int(proc.name)
    return None


def _stub(lay: Layout, symbols: list[str] = []) -> None:  # noqa: B006 (read only)
    """libcuda.so with soname libcuda.so.1, defining `symbols` (dummies: the linker keeps a
    library only when it defines something the objects call)."""
    lay.stub.parent.mkdir(parents=True, exist_ok=True)
    code = "".join(f"void {name}(void){{}}\n" for name in ["gra_local_cuda_stub", *symbols])
    run(["gcc", "-shared", "-fPIC", "-o", lay.stub, "-Wl,-soname,libcuda.so.1", "-x", "c", "-"], input=code.encode())


def unlinked_driver(lib: Path) -> list[str]:
    """The CUDA driver functions (cuXxx) `lib` calls while it names no libcuda.so.1 (loading
    it would fail: undefined symbol)."""
    if "libcuda.so.1" in needed_sonames(lib):
        return []
    out = subprocess.run(["nm", "-D", "--undefined-only", str(lib)], check=True, capture_output=True, text=True)
    return sorted({ln.split()[-1] for ln in out.stdout.splitlines() if re.fullmatch(r"cu[A-Z]\w*", ln.split()[-1])})


def _ninja(lay: Layout, jobs: int) -> None:
    with lay.log.open("ab") as log:
        rc = subprocess.run(["ninja", "-C", str(lay.build), f"-j{jobs}", "llama", "ggml-cuda"],
                            stdout=log, stderr=subprocess.STDOUT, check=False).returncode
        log.write(f"rc={rc}\n".encode())
    if rc != 0:
        raise Refused(f"ninja failed (exit {rc}): see {lay.log}")


def _untar(tarball: Path, dest: Path) -> None:
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")


def build(lay: Layout, jobs: int) -> None:
    pip = [sys.executable, "-m", "pip"]
    lay.root.mkdir(parents=True, exist_ok=True)
    todo = [
        (lay.sdist, f"download the llama-cpp-python {lay.version} sdist (pinned in pyproject.toml)",
         lambda: run([*pip, "download", "--no-deps", "--no-binary", ":all:",
                      f"llama-cpp-python=={lay.version}", "-d", lay.root])),
        (lay.src / "CMakeLists.txt", f"unpack it into {lay.src}", lambda: _untar(lay.sdist, lay.root)),
        (lay.cublas / "lib" / "libcublas.so.13", "nvidia-cublas 13 (headers, link libraries)",
         lambda: run([*pip, "install", "--target", lay.root / "cublas", "nvidia-cublas>=13,<14"])),
        (lay.stub, "a stub libcuda.so (the driver's libcuda.so.1 is linked at run time)", lambda: _stub(lay)),
        (lay.build / "build.ninja", "cmake configure", lambda: run(cmake_args(lay))),
    ]
    for n, (result, what, action) in enumerate(todo, 1):
        done = result.is_file()
        step(f"{n}/6 {what}" + (f": there already ({result})" if done else ""))
        if not done:
            action()
        if n == 3:
            for name in ("libcublas.so", "libcublasLt.so"):
                if not (lay.cublas / "lib" / name).exists():
                    (lay.cublas / "lib" / name).symlink_to(f"{name}.13")
    if (pid := ninja_running_in(lay.build)) is not None:
        raise Refused(f"a ninja is already compiling in {lay.build} (pid {pid}): wait for it, then --gather-only")
    step(f"6/6 ninja llama ggml-cuda (resumes; log {lay.log}; about an hour on 2 cores)")
    _ninja(lay, jobs)
    if calls := unlinked_driver(lay.bin / "libggml-cuda.so"):
        step(f"libggml-cuda.so calls {', '.join(calls)} but names no libcuda.so.1: the stub gets them; relink")
        _stub(lay, calls)
        _ninja(lay, jobs)


def needed_sonames(lib: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(lib)], check=True, capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def toolkit_bin(lay: Layout) -> Path:
    """The CUDA toolkit's bin/ the build used (CMakeCache), else nvcc's folder."""
    m = re.search(r"^CUDAToolkit_BIN_DIR:PATH=(.+)$", (lay.build / "CMakeCache.txt").read_text(), re.M)
    return Path(m.group(1)) if m else Path(shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc").resolve().parent


def cuda_version(lay: Layout) -> str:
    out = subprocess.run([toolkit_bin(lay) / "nvcc", "--version"], check=True, capture_output=True, text=True).stdout
    if not (m := re.search(r"release (\d+\.\d+)", out)):
        raise Refused(f"nvcc --version says no release: {out.strip()[-200:]}")
    return m.group(1)


def gather_libs(lay: Layout, dest: Path) -> dict:
    """Copy libllama.so, libggml.so and every DT_NEEDED of theirs that is built here or is
    the CUDA runtime, as real stripped files under the loader's names; say who provides the
    rest (cuBLAS: the machine's pip package; libcuda.so.1: its driver; the system)."""
    dest.mkdir(parents=True, exist_ok=True)
    cuda_libs = [d for d in (toolkit_bin(lay).parent / "lib64", toolkit_bin(lay).parent / "lib") if d.is_dir()]
    copied: dict[str, dict] = {}
    device: dict[str, str] = {}  # who provides the rest
    queue = list(LOADED_BY_NAME)
    while queue:
        name = queue.pop(0)
        if name in copied or name in device:
            continue
        src = lay.bin / name
        if not src.exists():
            src = next((d / name for d in cuda_libs if (d / name).exists()), src)
        if src.exists():
            real, out = src.resolve(), dest / name
            shutil.copyfile(real, out)  # a real file: links do not travel
            subprocess.run(["strip", "--strip-unneeded", str(out)], check=True)
            copied[name] = {"from": str(real), "bytes_before_strip": real.stat().st_size, "bytes": out.stat().st_size}
            queue += needed_sonames(out)
        elif name.startswith(("libcublas.so", "libcublasLt.so")):
            device[name] = "cuBLAS: the machine's nvidia-cublas package (LD_LIBRARY_PATH)"
        elif name.startswith("libcuda.so"):
            device[name] = "the NVIDIA driver"
        elif name.startswith(SYSTEM_LIBS):
            device[name] = "system"
        else:
            raise Refused(f"{name} (needed by the built libraries) is not built, nor in {cuda_libs}, nor known")
    return {"copied": copied, "from_device": device}


def fetch_wheels(lay: Layout, python_version: str, versions: dict[str, str]) -> list[Path]:
    folder = lay.wheels / ("cp" + python_version.replace(".", ""))
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for name, version in versions.items():
        stem = f"{re.sub(r'[-.]+', '_', name)}-{version}-".lower()
        if not (have := [w for w in folder.glob("*.whl") if w.name.lower().startswith(stem)]):
            plat = [a for p in PLATFORMS for a in ("--platform", p)]
            run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--python-version", python_version, "--implementation", "cp", *plat,
                 "-d", folder, f"{name}=={version}"])
            have = [w for w in folder.glob("*.whl") if w.name.lower().startswith(stem)]
        if len(have) != 1:
            raise Refused(f"expected one {name} {version} wheel in {folder}, found {len(have)}")
        found += have
    return found


def imported_distributions(python: str = sys.executable) -> set[str]:
    """Distributions gra_local's CLI, worker and bench scripts import beyond DEVICE_HAS' own
    (and those import), measured in a fresh process: the ENTRY_MODULES, and every top-level
    package named by an import (lazy ones too) outside gra_local/tui and in SCRIPTS_USED."""
    code = r"""
import ast, importlib, importlib.metadata as md, json, pathlib, sys
repo = pathlib.Path(sys.argv[1]); sys.path[:0] = [str(repo / "scripts"), str(repo)]
def tops(mods): return {m.split(".")[0] for m in mods}
device, entries, scripts = map(json.loads, sys.argv[2:5]); pd = md.packages_distributions()
for name in device:
    for mod in [m for m, ds in pd.items() if name in {d.lower().replace("_", "-") for d in ds}]:
        try: importlib.import_module(mod)
        except Exception: pass
baseline, first, imp = tops(sys.modules), {}, __builtins__.__import__
def hook(name, g=None, l=None, f=(), level=0):
    if not level and name.split(".")[0] not in sys.modules:
        first.setdefault(name.split(".")[0], (g or {}).get("__name__", ""))
    return imp(name, g, l, f, level)
__builtins__.__import__ = hook
files = [p for p in (repo / "gra_local").rglob("*.py") if "tui" not in p.relative_to(repo).parts]
names = set()
for p in files + [repo / "scripts" / s for s in scripts]:
    for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
        if isinstance(n, ast.Import): names |= tops(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level: names.add(n.module.split(".")[0])
for mod in list(entries) + sorted(names - set(sys.stdlib_module_names)):
    importlib.import_module(mod)
new = {m for m in tops(sys.modules) - baseline - set(sys.stdlib_module_names)
       if first.get(m, "").split(".")[0] not in baseline}  # not optional imports of the device's packages
print(json.dumps(sorted({d for m in new for d in pd.get(m, [])})))
"""
    proc = subprocess.run([python, "-c", code, str(REPO), json.dumps(DEVICE_HAS), json.dumps(ENTRY_MODULES),
                           json.dumps(SCRIPTS_USED)], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise Refused(f"the import check failed: {proc.stderr.strip().splitlines()[-1:]}")
    norm = {re.sub(r"[-_.]+", "-", d).lower() for d in json.loads(proc.stdout)}
    return norm - {"gra-local", "llama-cpp-python"}


def stage_bundle(lay: Layout, python_version: str) -> dict:
    for lib in ("libllama.so", "libggml-cuda.so"):
        if not (lay.bin / lib).exists():
            raise Refused(f"{lay.bin / lib} is missing: the build is not done (see {lay.log})")
    if unlinked_driver(lay.bin / "libggml-cuda.so"):
        raise Refused("libggml-cuda.so calls the driver but names no libcuda.so.1: run without --gather-only")
    if missing := imported_distributions() - set(WHEELS) - {re.sub(r"[-_.]+", "-", d) for d in DEVICE_HAS}:
        raise Refused(f"gra_local imports {sorted(missing)}, which are neither in WHEELS nor on the device")
    shutil.rmtree(lay.stage, ignore_errors=True)
    site = lay.stage / "site"
    step(f"stage the llama_cpp package from {lay.src} with the CUDA libraries")
    shutil.copytree(lay.src / "llama_cpp", site / "llama_cpp", ignore=shutil.ignore_patterns("lib", "__pycache__"))
    libs = gather_libs(lay, site / "llama_cpp" / "lib")
    info = site / f"llama_cpp_python-{lay.version}.dist-info"  # run.json reads the version from it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: {lay.version}\n")
    (info / "top_level.txt").write_text("llama_cpp\n")
    versions = {n: importlib.metadata.version(n) for n in WHEELS + NEWER}  # this .venv's (`pip freeze`)
    step(f"cp{python_version.replace('.', '')} wheels: " + ", ".join(f"{k}=={v}" for k, v in versions.items()))
    for wheel in fetch_wheels(lay, python_version, versions):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(site)
    return {"libs": libs, "wheels": versions}


def pack(lay: Layout, out_dir: Path, meta: dict, python_version: str) -> Path:
    """bundle.tar.xz of the stage (sorted, so the same stage packs the same) + manifest.json."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    files, tarball = sorted(p for p in lay.stage.rglob("*") if p.is_file()), out_dir / "bundle.tar.xz"
    step(f"compress {len(files)} files ({sum(p.stat().st_size for p in files) / MiB:.1f} MiB) into {tarball}")
    with tarfile.open(tarball, "w:xz", preset=9 | lzma.PRESET_EXTREME) as tar:
        for p in files:
            tar.add(p, arcname=str(p.relative_to(lay.stage)), recursive=False)
    copied = meta["libs"]["copied"]
    cublas = [n for n in meta["libs"]["from_device"] if re.fullmatch(r"libcublas\.so\.\d+", n)]
    manifest = {
        "llama_cpp_python": lay.version, "cuda_version": cuda_version(lay), "cuda_arch": CUDA_ARCH,
        "python_version": python_version, "cublas_soname": cublas[0] if cublas else None,
        "from_device": meta["libs"]["from_device"], "wheels": meta["wheels"],
        "libs": {n: {k: v for k, v in c.items() if k != "from"} for n, c in copied.items()},
        "bundle": {"file": tarball.name, "bytes": tarball.stat().st_size, "sha256": hashlib.sha256(tarball.read_bytes()).hexdigest()},
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": [[str(p.relative_to(lay.stage)), p.stat().st_size] for p in files],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return tarball


def folder_size(folder: Path) -> int:
    """Bytes of the regular files under `folder` (links not followed: they do not travel)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def tree_size(repo: Path = REPO) -> int:
    """Bytes of the working tree that travels: tracked files, and untracked ones git does
    not ignore."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], check=True, capture_output=True).stdout
    paths = {repo / p for p in out.decode().split("\0") if p}
    return sum(p.lstat().st_size for p in paths if p.is_file() and not p.is_symlink())


def size_check(bundle: Path, tree_bytes: int) -> tuple[int, str | None]:
    """(the bundle's bytes, None) when bundle + tree fit in LIMIT, else the refusal line."""
    size = folder_size(bundle)
    if size + tree_bytes > LIMIT:
        return size, (f"bundle {size / MiB:.1f} MiB + tree {tree_bytes / MiB:.1f} MiB = "
                      f"{(size + tree_bytes) / MiB:.1f} MiB is over the {LIMIT / MiB:.0f} MiB a device run carries")
    return size, None


def check(bundle: Path) -> int:
    if not (bundle / "manifest.json").is_file():
        raise Refused(f"no bundle: {bundle / 'manifest.json'} is missing")
    manifest = json.loads((bundle / "manifest.json").read_text())
    tarball = bundle / manifest["bundle"]["file"]
    if not tarball.is_file() or tarball.stat().st_size != manifest["bundle"]["bytes"]:
        raise Refused(f"{tarball} is missing or not the size the manifest says")
    tree = tree_size()
    size, refused = size_check(bundle, tree)
    if refused:
        raise Refused(f"refused: {refused}")
    print(f"gpu_bundle: bundle {size / MiB:.1f} MiB + tree {tree / MiB:.1f} MiB = {(size + tree) / MiB:.1f} MiB "
          f"of {LIMIT / MiB:.0f} MiB (llama-cpp-python {manifest['llama_cpp_python']}, CUDA "
          f"{manifest['cuda_version']}, sm_{manifest['cuda_arch']}, cp{manifest['python_version'].replace('.', '')})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", type=Path, default=Path.home() / ".cache" / "gra-local" / "gpu-build",
                    help="persistent build folder (default ~/.cache/gra-local/gpu-build)")
    ap.add_argument("--python-version", default="3.12", help="the GPU machine's python (3.12)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="ninja -j")
    ap.add_argument("--gather-only", action="store_true", help="build nothing: gather a finished build")
    ap.add_argument("--check-only", action="store_true", help="only check an existing bundle and its size")
    ap.add_argument("--out", type=Path, default=BUNDLE, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        if args.check_only:
            return check(args.out)
        lay = Layout(args.build_dir.expanduser().resolve(), pinned_version())
        if not args.gather_only:
            build(lay, args.jobs)
        meta = stage_bundle(lay, args.python_version)
        for name, c in meta["libs"]["copied"].items():
            step(f"  {name}: {c['bytes_before_strip'] / MiB:.2f} MiB, stripped {c['bytes'] / MiB:.2f} MiB")
        pack(lay, args.out, meta, args.python_version)
        return check(args.out)
    except Refused as exc:
        print(f"gpu_bundle: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"gpu_bundle: {' '.join(map(str, exc.cmd))} failed (exit {exc.returncode})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
