"""The one command run on a lent GPU machine (issue 23): `bash scripts/gpu_check [--out DIR]`.

Installs nothing. It unpacks `.gpu-bundle/bundle.tar.xz` (scripts/gpu_bundle.py) into /tmp,
puts its site/ (the dependencies; llama_cpp and its CUDA libraries) on PYTHONPATH ahead of
the repo and the machine's cuBLAS on LD_LIBRARY_PATH, or stops with one line, exit 2, where
the bundle cannot run (no GPU, another sm_ or CUDA major, no cuBLAS, a library missing).
Then, each step a process group with its own timeout inside one budget (--budget-s, 480):
a. random-weight Qwen2.5-0.5B and 1.5B shapes (shaped_gguf.py), nvidia-smi and doctor;
c. `models inspect --json` (the plan), a small `run` and `review` on the 0.5B, GPU layers
   "auto": judge validity, placement, the worker log's layers and CUDA buffers vs the plan;
d. the fallback: torch holds all but --hog-free-mib of GPU memory while the 1.5B loads
   through LlamaProcessBackend ("auto", then every layer pinned): each load's gpu_plan;
b. bench_decode's part 3 (`shapes()`, n_parallel 1-16): parts 1-2 need the embedded SmolLM2
   (not carried: bench_decode exits 2), part 4 is about CPU cores; then, time allowing, the
   whole bench with `--model` the 0.5B for its last line (random weights; its raw side runs
   at llama-cpp-python's default n_gpu_layers=0, so not like for like).
Figures: $OUT/gpu_check.json; outputs: $OUT/gpu_check.log. A failed step keeps its last lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHAPES = {"q05": "qwen2.5-0.5b", "q15": "qwen2.5-1.5b"}
PARALLEL = [1, 2, 4, 8, 16]
MiB = 1 << 20
CUBLAS_DIRS = ("nvidia/cu13/lib", "nvidia/cu*/lib", "nvidia/cublas/lib")
MIN_STEP_S = 15.0  # a step with less of the budget left is skipped


class Stop(Exception):
    """The machine cannot run the bundle: one line, exit 2."""


def mismatch(manifest: dict, compute_cap: str, cublas_soname: str | None,
             driver_cuda: str | None = None) -> str | None:
    """Why the bundle cannot run on a GPU of `compute_cap` ("9.0") with the cuBLAS
    `cublas_soname` found (None: none) under a driver supporting CUDA `driver_cuda`; None
    when it can."""
    arch, cuda = str(manifest["cuda_arch"]), str(manifest["cuda_version"])
    want = manifest.get("cublas_soname") or f"libcublas.so.{cuda.split('.')[0]}"
    have = []
    if compute_cap.replace(".", "").strip() != arch:
        have.append(f"sm_{compute_cap.replace('.', '').strip()}")
    if driver_cuda and int(driver_cuda.split(".")[0]) < int(cuda.split(".")[0]):
        have.append(f"a driver for CUDA {driver_cuda}")
    if cublas_soname != want:
        have.append(f"no {want}" + (f" (found {cublas_soname})" if cublas_soname else " in its python's site-packages"))
    return f"the bundle was built for sm_{arch} / CUDA {cuda.split('.')[0]}, this machine has {', '.join(have)}" \
        if have else None


def find_cublas(want: str) -> tuple[Path | None, str | None]:
    """The folder of the python's nvidia cuBLAS libraries and the soname found there
    (`want` preferred)."""
    roots = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
             *(p for p in sys.path if p.endswith("-packages"))]
    found: list[tuple[Path, str]] = []
    for root in dict.fromkeys(roots):
        for pattern in CUBLAS_DIRS:
            for lib in sorted(Path(root).glob(f"{pattern}/libcublas.so.*")):
                if re.fullmatch(r"libcublas\.so\.\d+", lib.name):
                    found.append((lib.parent, lib.name))
    return next((f for f in found if f[1] == want), found[0] if found else (None, None))


def gpu_facts() -> dict:
    if shutil.which("nvidia-smi") is None:
        raise Stop("no NVIDIA GPU here (nvidia-smi not found)")
    q = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version,memory.total,memory.free",
                        "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=60, check=False)
    if q.returncode != 0 or not q.stdout.strip():
        raise Stop(f"nvidia-smi finds no GPU (exit {q.returncode}: {(q.stderr or q.stdout).strip()[:160]})")
    name, cap, driver, total, free = (x.strip() for x in q.stdout.strip().splitlines()[0].split(","))
    text = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=60, check=False).stdout
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return {"name": name, "compute_cap": cap, "driver_version": driver, "driver_cuda": cuda and cuda.group(1),
            "memory_total_mib": total, "memory_free_mib": free, "nvidia_smi": text}


def unpack(bundle: Path, manifest: dict) -> Path:
    """The bundle's site/ folder, unpacked once into /tmp."""
    dest = Path("/tmp") / f"gra-gpu-bundle-{manifest['bundle']['sha256'][:12]}"
    if not (dest / ".unpacked").exists():
        shutil.rmtree(dest, ignore_errors=True)
        with tarfile.open(bundle / manifest["bundle"]["file"]) as tar:
            tar.extractall(dest, filter="data")
        (dest / ".unpacked").touch()
    return dest / "site"


def unresolved(lib_dir: Path, env: dict) -> list[str]:
    """`ldd` lines of the bundle's libraries that say `not found`."""
    if shutil.which("ldd") is None:
        return []
    missing: dict[str, str] = {}
    for lib in sorted(lib_dir.glob("lib*.so*")):
        out = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, env=env, timeout=60).stdout
        missing.update({ln.split()[0]: lib.name for ln in out.splitlines() if "not found" in ln and ln.split()[0] not in missing})
    return [f"{name} (for {lib})" for name, lib in sorted(missing.items())]


# --- llama.cpp's own figures --------------------------------------------------------------


def llama_log_figures(text: str) -> dict:
    """The last load in a worker log: offloaded layers, and llama.cpp's buffers (MiB) per
    device and kind; gpu_mib sums the CUDA devices (not CUDA_Host)."""
    text = text.rsplit("llama_model_loader: loaded meta data", 1)[-1]
    off = re.findall(r"offloaded (\d+)/(\d+) layers to GPU", text)
    buffers: dict[str, dict[str, float]] = {}
    for dev, kind, mib in re.findall(r"^\S+:\s+(\S+)\s+(model|output|KV|compute|RS)\s+buffer size\s*=\s*([\d.]+) MiB",
                                     text, re.M):
        buffers.setdefault(dev, {})[kind] = float(mib)
    gpu = sum(v for d, kinds in buffers.items() if re.fullmatch(r"CUDA\d+", d) for v in kinds.values())
    return {"offloaded": f"{off[-1][0]}/{off[-1][1]}" if off else None, "buffers_mib": buffers,
            "gpu_mib": round(gpu, 1), "host_mib": round(sum(sum(k.values()) for k in buffers.values()) - gpu, 1)}


def run_figures(out: Path, model: str) -> dict:
    """What a run's / review's output dir says: status, counts, placement, judge validity,
    the planned footprint (residency) and llama.cpp's buffers from the worker log."""
    run = json.loads((out / "run.json").read_text())
    log = out / "logs" / f"{model}.log"
    keep = ("status", "counts", "placement", "residency", "judge_validity", "tokens", "timings", "loads",
            "worker_failures", "peak_rss_mb", "eta")
    fig = {k: run.get(k) for k in keep}
    fig["llama"] = llama_log_figures(log.read_text(errors="replace")) if log.is_file() else None
    return fig


# --- the steps ----------------------------------------------------------------------------


class Steps:
    """Each step a process (a group, killed whole at its timeout) inside one budget."""

    def __init__(self, budget_s: float, log: Path, env: dict) -> None:
        self.end, self.log, self.env = time.monotonic() + budget_s, log, env
        self.results: dict[str, dict] = {}

    def left(self) -> float:
        return self.end - time.monotonic()

    def run(self, name: str, cmd: list[str], timeout: float, cwd: Path = REPO, show: bool = False) -> str | None:
        """The step's output when it exits 0, else None; recorded either way."""
        limit = min(timeout, self.left())
        if limit < MIN_STEP_S:
            self.results[name] = {"skipped": f"budget spent ({self.left():.0f} s left)"}
            print(f"gpu_check: {name}: skipped (budget spent)", flush=True)
            return None
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", start_new_session=True)
        try:
            out, timed_out = proc.communicate(timeout=limit)[0], False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):  # the group, workers included
                os.killpg(proc.pid, signal.SIGKILL)
            out, timed_out = proc.communicate()[0], True
        seconds = round(time.monotonic() - start, 1)
        rec: dict = {"rc": proc.returncode, "seconds": seconds, "timed_out": timed_out}
        if timed_out or proc.returncode != 0:
            rec["tail"] = out.strip().splitlines()[-15:]
        self.results[name] = rec
        with self.log.open("a") as f:
            f.write(f"\n===== {name}: {' '.join(cmd)}\n{out}\n===== {name}: {rec}\n")
        state = "timed out" if timed_out else f"exit {proc.returncode}"
        print(f"gpu_check: {name}: {state} in {seconds} s", flush=True)
        if show:
            print(out, flush=True)
        return None if timed_out or proc.returncode != 0 else out


def parse_json(out: str | None, whole: bool = False) -> object:
    """A step's output (`whole`) or its last line as JSON; None when it is not."""
    try:
        return json.loads(out if whole else out.strip().splitlines()[-1]) if out else None
    except (ValueError, IndexError):
        return None


MAKE_SHAPE = r"""
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import shaped_gguf as g  # its shaped_gguf(), the quantizing on every core (it uses 2)
out, start = Path(sys.argv[3]), time.perf_counter()
if not out.is_file():
    out.parent.mkdir(parents=True, exist_ok=True)
    f16 = g.write_f16(g.SHAPES[sys.argv[2]], out.with_suffix(".f16.tmp"))
    g.quantize(f16, out.with_suffix(".tmp"), "Q4_K_M", threads=os.cpu_count() or 2).replace(out)
    f16.unlink()
print(f"{out}: {out.stat().st_size >> 20} MiB in {time.perf_counter() - start:.1f} s")
"""


def steps(s: Steps, work: Path, py: str, figures: dict, bench_cli: bool) -> None:
    bench = work / ".bench"
    ggufs = {k: bench / f"{v}-shape.Q4_K_M.gguf" for k, v in SHAPES.items()}
    for key, shape in SHAPES.items():  # a
        s.run(f"shaped_{key}", [py, "-c", MAKE_SHAPE, str(REPO / "scripts"), shape, str(ggufs[key])], 300)
    toml = work / "models.toml"
    toml.write_text(f'[[models]]\nname = "q05"\npath = "{ggufs["q05"]}"\nn_ctx = 2048\nn_gpu_layers = "auto"\n'
                    '[models.sampling.generator]\nmax_tokens = 96\n')
    cli = [py, "-m", "gra_local.cli"]
    doctor = s.run("doctor", [*cli, "doctor", "--offline", "--models", str(toml)], 90, show=True)
    figures["doctor"] = doctor and doctor.strip().splitlines()[-40:]
    plan = parse_json(s.run("inspect_q05", [*cli, "models", "inspect", "q05", "--models", str(toml), "--json"], 60),
                      whole=True)
    if isinstance(plan, dict):
        figures["plan_q05"] = {k: plan.get(k) for k in ("memory", "plan", "parallel", "fit", "size_bytes")}
    small = ["--models", str(toml), "--no-dedup", "--no-relevance", "--canaries", "2", "--panel", "2", "--quiet"]
    data = work / "review.jsonl"
    data.write_text("".join((REPO / "gra_local" / "data" / "example_seeds.jsonl").read_text().splitlines(True)[:3]))
    for mode, args in (("run", [str(REPO / "gra_local" / "data" / "example_seeds.jsonl"), "--samples", "2",
                                "--max-attempts", "4", "--seed-pool", "4"]),
                       ("review", [str(data)])):  # c
        out = work / mode
        s.run(f"{mode}_q05", [*cli, mode, *args, "--out", str(out), *small], 300)
        if (out / "run.json").is_file():
            figures[f"{mode}_q05"] = run_figures(out, "q05")
    if isinstance(plan, dict) and isinstance(figures.get("run_q05"), dict):
        llama = figures["run_q05"].get("llama") or {}
        planned = (plan.get("plan") or {}).get("gpu_bytes") or 0
        figures["plan_vs_llama_q05"] = {
            "planned_gpu_mib": round(planned / MiB, 1), "planned_total_mib": round(plan["memory"]["total_bytes"] / MiB, 1),
            "llama_gpu_mib": llama.get("gpu_mib"), "llama_host_mib": llama.get("host_mib"),
            "planned_over_llama_gpu": round(planned / MiB / llama["gpu_mib"], 3) if llama.get("gpu_mib") else None}
    figures["fallback_q15"] = parse_json(s.run("fallback_q15", [  # d
        py, str(Path(__file__).resolve()), "--fallback-step", str(ggufs["q15"]), "--hog-free-mib",
        str(figures["hog_free_mib"]), "--out", str(work / "fallback")], 240))
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bench_decode as b; "
            "rows = b.shapes(sys.argv[2].split(','), b.default_threads(), json.loads(sys.argv[3]), 64); "
            "print(json.dumps(rows))")
    rows = parse_json(s.run("bench_shapes", [py, "-c", code, str(REPO / "scripts"), ",".join(SHAPES.values()),
                                           json.dumps(PARALLEL)], 300, cwd=work))  # b
    if isinstance(rows, list):
        head = ["shape", "n_parallel", "free_tok_s", "ms_per_token_free", "ms_per_token_grammar"]
        figures["bench_shapes"] = [dict(zip(head, r, strict=False)) for r in rows]
    if bench_cli and s.left() > 90:
        out = s.run("bench_decode_q05", [py, str(REPO / "scripts" / "bench_decode.py"), "--model", str(ggufs["q05"]), *(
            "--prompts 1 --free-tokens 32 --candidates 2 --panel 1 --parallel 1,4,16 --repeats 1 --no-busy --shapes".split()), ""],
            300, cwd=work)
        figures["bench_decode_q05"] = out and out.strip().splitlines()[-1]


# --- d. the fallback, in its own process ----------------------------------------------------

HOG = r"""
import sys, torch
keep, held, chunk = int(sys.argv[1]) << 20, [], 1 << 30
free, total = torch.cuda.mem_get_info()
while free - keep > 16 << 20 and chunk >= 1 << 24:
    try:
        held.append(torch.empty(min(chunk, free - keep), dtype=torch.uint8, device="cuda"))
    except RuntimeError:
        chunk //= 2
    free, total = torch.cuda.mem_get_info()
print(f"holding {sum(t.numel() for t in held) >> 20} MiB; {free >> 20} MiB of {total >> 20} MiB free", flush=True)
sys.stdin.read()
"""


def fallback_step(model: Path, free_mib: int, logs: Path) -> dict:
    """Load `model` while torch holds all but `free_mib` of GPU memory: with "auto" (the
    planner sees the memory taken) and with every layer pinned (the load fails and
    LlamaProcessBackend retries with half, then none); what gpu_plan said each time."""
    from gra_local.backends.llama.process import LlamaProcessBackend
    from gra_local.core import paths
    from gra_local.core.backend import ChatRequest
    from gra_local.core.config import ModelSpec
    from gra_local.models.hardware import probe

    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "hog.log").open("w") as err:
        hog = subprocess.Popen([sys.executable, "-c", HOG, str(free_mib)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=err, text=True)
    fig: dict = {"hog": (hog.stdout.readline() if hog.stdout else "").strip()
                 or "failed: " + " | ".join((logs / "hog.log").read_text().strip().splitlines()[-3:])}
    try:
        fig["vram_free_seen_mib"] = (probe().memory_facts().vram_free_bytes or 0) // MiB
        backend = LlamaProcessBackend(logs, paths.data_dir(), probe_speed=False)
        for label, layers in (("auto", "auto"), ("all_layers", -1)):
            spec = ModelSpec(name=f"q15-{label.replace('_', '-')}", path=str(model), n_ctx=2048,
                             n_gpu_layers=layers, n_parallel=1)
            start = time.perf_counter()
            try:
                session = backend.load(spec)
                got = {"seconds": round(time.perf_counter() - start, 2), "n_gpu_layers": session.info.n_gpu_layers,
                       "gpu_offload": session.info.gpu_offload, "gpu_plan": session.info.details.get("gpu_plan")}
                r = session.chat(ChatRequest(messages=[{"role": "user", "content": "Hi"}], temperature=0.0,
                                             top_p=1.0, max_tokens=8, seed=0))
                got["chat"] = {"finish_reason": r.finish_reason, "tokens": r.completion_tokens}
                session.close()
            except Exception as exc:  # recorded: the figure is what happened
                got = {"error": f"{type(exc).__name__}: {exc}"[:800]}
            log = logs / f"{spec.name}.log"
            got["llama"] = llama_log_figures(log.read_text(errors="replace")) if log.is_file() else None
            fig[label] = got
    finally:
        if hog.stdin:
            hog.stdin.close()
        try:
            hog.wait(timeout=30)
        except subprocess.TimeoutExpired:
            hog.kill()
    return fig


# --- the command ---------------------------------------------------------------------------


def prepare(bundle: Path, no_gpu: bool) -> tuple[dict, dict, dict]:
    """(the environment for every step, the machine's facts, the manifest); Stop when the
    bundle cannot run here."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if no_gpu:  # a dry run of the steps on this machine's own packages (scripts' tests)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        return env, {}, {}
    gpu = gpu_facts()
    if not (bundle / "manifest.json").is_file():
        raise Stop(f"no bundle: {bundle / 'manifest.json'} is missing (build it: .venv/bin/python scripts/gpu_bundle.py)")
    manifest = json.loads((bundle / "manifest.json").read_text())
    site_dir = unpack(bundle, manifest)
    cublas_dir, soname = find_cublas(manifest.get("cublas_soname") or "")
    if why := mismatch(manifest, gpu["compute_cap"], soname, gpu["driver_cuda"]):
        raise Stop(why)
    lib = site_dir / "llama_cpp" / "lib"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site_dir), str(REPO), env.get("PYTHONPATH")]))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(lib), str(cublas_dir), env.get("LD_LIBRARY_PATH")]))
    if missing := unresolved(lib, env):
        raise Stop(f"the bundle's libraries need what this machine lacks: {', '.join(missing)}")
    gpu["cublas"] = {"dir": str(cublas_dir), "soname": soname}
    return env, gpu, manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-check-out"),
                    help="where gpu_check.json and gpu_check.log go (default $OUT, else ./gpu-check-out)")
    ap.add_argument("--budget-s", type=float, default=480, help="wall-clock budget of the steps (480)")
    ap.add_argument("--hog-free-mib", type=int, default=512, help="GPU memory torch leaves free in step d (512)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gra-gpu-check"), help="models and runs (not carried)")
    ap.add_argument("--bundle", type=Path, default=REPO / ".gpu-bundle", help=argparse.SUPPRESS)
    ap.add_argument("--no-gpu", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-bench-cli", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fallback-step", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fallback_step:
        print(json.dumps(fallback_step(args.fallback_step, args.hog_free_mib, args.out)), flush=True)
        return 0
    try:
        env, gpu, manifest = prepare(args.bundle, args.no_gpu)
    except Stop as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    home = args.work / "home"  # private config, cache, data and state dirs
    for kind in ("config", "cache", "data", "state"):
        env[f"XDG_{kind.upper()}_HOME"] = env[f"GRA_LOCAL_{kind.upper()}_DIR"] = str(home / kind)
    print(gpu.get("nvidia_smi", "(no GPU: a dry run)"), flush=True)
    log = args.out / "gpu_check.log"
    log.write_text(gpu.get("nvidia_smi", ""))
    s, figures, started = Steps(args.budget_s, log, env), {"hog_free_mib": args.hog_free_mib}, time.time()
    try:
        steps(s, args.work, sys.executable, figures, not args.no_bench_cli)
    finally:
        result = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                  "seconds": round(time.time() - started, 1), "budget_s": args.budget_s, "python": sys.version.split()[0],
                  "machine": {k: v for k, v in gpu.items() if k != "nvidia_smi"},
                  "bundle": {k: manifest.get(k) for k in ("llama_cpp_python", "cuda_version", "cuda_arch",
                                                          "python_version", "cublas_soname", "built")},
                  "steps": s.results, "figures": figures}
        (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    failed = [k for k, v in s.results.items() if v.get("rc") != 0]
    print(f"gpu_check: {len(s.results) - len(failed)}/{len(s.results)} steps done"
          + (f"; not done: {', '.join(failed)}" if failed else "") + f"; figures in {args.out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
