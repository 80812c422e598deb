"""`gra-local models inspect PATH|NAME` and `gra-local doctor`: what a GGUF is, what this
machine is, and how each model would run on it, before anything loads."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gra_local.backends.endpoint.reach import EndpointReach, run_hosts
from gra_local.commands.models import endpoint_line, endpoint_reaches
from gra_local.core import paths
from gra_local.core.config import ModelSpec
from gra_local.core.errors import ConfigError, GraError, ModelError
from gra_local.models.describe import human_params, human_size
from gra_local.models.fit import context_for, model_facts
from gra_local.models.gguf_info import GGUFInfo, chat_template_family, read_gguf_info, sha256_file
from gra_local.models.hardware import Hardware, probe
from gra_local.models.parallel import ParallelPlan, choose_parallel, plan_parallel
from gra_local.models.planner import badge, gib, plan_layers
from gra_local.models.registry import load_models
from gra_local.models.resolve import check_model_file, model_path
from gra_local.runs.formatting import MISSING


def _setup_fix(backend: str, flag: str) -> str:
    return (f"rebuild llama-cpp-python with {backend.capitalize() if backend == 'metal' else backend.upper()}: "
            f"`packaging/install-llama.sh {backend} {sys.executable}` from a source checkout, or "
            f"CMAKE_ARGS=\"-DGGML_{flag}=on\" pip install --force-reinstall --no-cache-dir llama-cpp-python")


SETUP_FIX = {"cuda": _setup_fix("cuda", "CUDA"), "metal": _setup_fix("metal", "METAL")}


def _opt(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    return getattr(args, name, default)


def _resolve_target(target: str, models_file: Path | None) -> tuple[Path, ModelSpec | None]:
    """A GGUF path, else a registered model name."""
    path = Path(target).expanduser()
    if path.exists() or target.lower().endswith(".gguf") or os.sep in target:
        return path, None
    try:
        registry, source = load_models(models_file)
    except ConfigError as exc:
        raise ModelError(f"{target}: no such file, and no registry to look the name up in ({exc})") from None
    try:
        spec = registry.get(target)
    except KeyError:
        names = ", ".join(m.name for m in registry.models)
        raise ModelError(f"{target}: no such file, and no model of that name in {source} "
                         f"(registered: {names})") from None
    return model_path(spec), spec


def inspect_command(args: argparse.Namespace) -> int:
    target = str(_opt(args, "target") or _opt(args, "model"))
    path, spec = _resolve_target(target, _opt(args, "models"))
    info = read_gguf_info(path)
    facts = model_facts(info)
    sha = sha256_file(path, paths.cache_dir())
    ctx = _opt(args, "ctx")
    if ctx is None:
        ctx = context_for(spec, info) if spec else min(4096, info.context_length or 4096)
    hw = probe()
    mem = hw.memory_facts()
    parallel, refused = _parallel(spec, info, ctx, hw)
    plan = plan_layers(facts, ctx, mem, pinned=spec.n_gpu_layers if spec else "auto",
                       kv_cells=parallel.kv_cells)
    est = plan.estimate
    family = chat_template_family(info.chat_template)
    if _opt(args, "json"):
        print(json.dumps({
            "path": str(path), "name": spec.name if spec else None, "gguf_name": info.name,
            "architecture": info.architecture, "parameters": info.parameter_count,
            "file_type": info.file_type, "size_bytes": info.size_bytes,
            "gguf_version": info.gguf_version, "context_length": info.context_length,
            "block_count": info.block_count, "embedding_length": info.embedding_length,
            "head_count": info.head_count, "head_count_kv": info.head_count_kv,
            "vocab_size": facts.n_vocab, "chat_template": info.chat_template is not None,
            "chat_template_family": family, "tokenizer": info.tokenizer_model,
            "split_count": info.split_count, "sha256": sha,
            "memory": est.model_dump(), "fit": badge(plan),
            "plan": plan.model_dump(exclude={"estimate"}),
            "parallel": parallel.model_dump() | {"refused": refused},
        }, indent=2))
        return 0
    heads = f"{info.head_count or '?'} (KV heads {info.head_count_kv or info.head_count or '?'})"
    rows = [
        ("model", spec.name if spec else "(not registered)"),
        ("gguf name", info.name or MISSING),
        ("architecture", info.architecture),
        ("parameters", human_params(info.parameter_count)),
        ("file type", info.file_type),
        ("size", human_size(info.size_bytes)),
        ("trained context", info.context_length or "unknown"),
        ("layers", info.block_count or "unknown"),
        ("embedding", info.embedding_length or "unknown"),
        ("heads", heads),
        ("vocabulary", facts.n_vocab or "unknown"),
        ("chat template", f"yes ({family})" if info.chat_template else
         "no: set chat_format for it in models.toml"),
        ("tokenizer", info.tokenizer_model or "unknown"),
        ("sha256", sha),
    ]
    if info.split_count:
        rows.append(("split files", info.split_count))
    print(path)
    for key, value in rows:
        print(f"  {key:16} {value}")
    print(f"memory at n_ctx {ctx}: {est.summary()}")
    for note in est.notes:
        print(f"  note: {note}")
    print(f"plan: {plan.reason}")
    if refused:
        print(f"parallel: refused: {refused}")
    else:
        print(f"parallel: {parallel.n_parallel} sequence(s), {parallel.kv_cells} KV cells, "
              f"KV cache {gib(parallel.kv_bytes)}: {parallel.reason}")
    return 0


def _parallel(spec: ModelSpec | None, info: GGUFInfo, n_ctx: int, hw: Hardware) -> tuple[ParallelPlan, str | None]:
    """(the parallel plan, None); an unregistered file gets "auto". A pinned n_parallel
    that cannot fit: (one sequence's plan, the refusal a run would give)."""
    if spec is None:
        return choose_parallel(model_facts(info), n_ctx, hw.memory_facts(), model=Path(info.path).name), None
    try:
        return plan_parallel(spec, info, n_ctx, hw), None
    except ModelError as exc:
        return plan_parallel(spec.model_copy(update={"n_parallel": 1}), info, n_ctx, hw), str(exc)


# ---- doctor ----

def _hardware_problems(hw: Hardware) -> list[dict[str, str]]:
    problems = []
    b = hw.llama
    if b is None:
        problems.append({"problem": "llama.cpp could not be probed: " + "; ".join(hw.notes),
                         "fix": "reinstall llama-cpp-python with `scripts/setup`"})
        return problems
    nvidia = [g for g in hw.gpus if g.kind == "nvidia"]
    apple = [g for g in hw.gpus if g.kind == "apple"]
    if nvidia and not b.gpu_offload and b.backend == "CPU":
        problems.append({"problem": f"{len(nvidia)} NVIDIA GPU(s) found, but llama.cpp is a CPU-only "
                                    "build: models run on the CPU", "fix": SETUP_FIX["cuda"]})
    if apple and not b.gpu_offload:
        problems.append({"problem": "Apple Silicon GPU found, but llama.cpp is built without Metal",
                         "fix": SETUP_FIX["metal"]})
    if b.backend != "CPU" and not b.gpu_offload:
        problems.append({"problem": f"llama.cpp is built with {b.backend} but finds no {b.backend} device",
                         "fix": "check the GPU driver (`nvidia-smi` for CUDA) and that "
                                "CUDA_VISIBLE_DEVICES / GGML_VK_VISIBLE_DEVICES do not hide it"})
    if hw.ram_total_bytes == 0:
        problems.append({"problem": "RAM size unknown: fit checks assume nothing is available",
                         "fix": "see the notes above; report the platform"})
    return problems


def _path_problems(dirs: dict[str, Path]) -> list[dict[str, str]]:
    problems = []
    for key, d in dirs.items():
        probe_at = d
        while not probe_at.exists() and probe_at.parent != probe_at:
            probe_at = probe_at.parent
        if not os.access(probe_at, os.W_OK):
            env = f"GRA_LOCAL_{key.upper()}_DIR"
            problems.append({"problem": f"{key} folder {d} is not writable",
                             "fix": f"fix its permissions, or point {env} at a writable folder"})
    return problems


def _model_report(spec: ModelSpec, source: str, hw: Hardware) -> tuple[dict[str, Any], list[dict[str, str]]]:
    entry: dict[str, Any] = {"name": spec.name, "path": spec.path, "usable": False}
    try:
        path, info = check_model_file(spec)
    except GraError as exc:
        entry["error"] = str(exc)
        fix = (f"correct its path in {source}, or `gra-local models remove {spec.name}`"
               if "not found" in str(exc) or "not a GGUF" in str(exc)
               else f"re-download the file, or fix the entry in {source}")
        if "pull-default" in str(exc) or "chat_format" in str(exc):
            fix = "as the message says"
        return entry, [{"problem": str(exc), "fix": fix}]
    n_ctx = context_for(spec, info)
    parallel, refused = _parallel(spec, info, n_ctx, hw)
    plan = plan_layers(model_facts(info), n_ctx, hw.memory_facts(), pinned=spec.n_gpu_layers,
                       kv_cells=parallel.kv_cells)
    entry.update(usable=plan.where != "wont_fit" and not refused, path=str(path), file_type=info.file_type,
                 size_bytes=info.size_bytes, n_ctx=n_ctx, plan=plan.model_dump(exclude={"estimate"}),
                 memory=plan.estimate.model_dump(), parallel=parallel.model_dump() | {"refused": refused})
    problems = []
    if refused:
        problems.append({"problem": refused,
                         "fix": f"lower n_parallel (or set it to \"auto\") for it in {source}"})
    if plan.where == "wont_fit":
        problems.append({"problem": f"model {spec.name!r} {plan.reason.split('. Fix:')[0]}",
                         "fix": f"a smaller quantization or model, or a smaller n_ctx for it in {source}"})
    elif not plan.fits:
        problems.append({"problem": f"model {spec.name!r}: {plan.reason}",
                         "fix": f"set n_gpu_layers = \"auto\" (or fewer layers) for it in {source}"})
    if spec.n_ctx and info.context_length and spec.n_ctx > info.context_length:
        problems.append({"problem": f"model {spec.name!r}: n_ctx {spec.n_ctx} is above its "
                                    f"trained context {info.context_length} (a run refuses it)",
                         "fix": f"set n_ctx to {info.context_length} or less in {source}"})
    return entry, problems


def _endpoint_report(spec: ModelSpec, reach: EndpointReach,
                     source: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """An endpoint model's entry: each server's reach (kind, version, model ids, round trip)."""
    entry: dict[str, Any] = {
        "name": spec.name, "endpoint": [s.endpoint for s in reach.servers], "model": spec.model,
        "api_key_env": spec.api_key_env, "server": spec.server,
        "max_in_flight": spec.max_in_flight, "usable": reach.usable, "summary": reach.summary(),
        "line": endpoint_line(spec, reach),
        "servers": [asdict(s) | {"host": s.host, "summary": s.summary()} for s in reach.servers]}
    problems = []
    for s in reach.servers:
        if s.state == "down":
            fix = (f"start that server, or correct its endpoint in {source} (a run takes a "
                   "server that does not answer out, and tries it again later)")
        elif s.state == "problem":
            fix = f"as the message says, in {source} or on the server"
        elif s.state == "unchecked" and s.detail != "offline":
            fix = f"export {spec.api_key_env}=<its key> before the run"
        else:
            continue  # up, or not contacted (--offline)
        problems.append({"problem": f"endpoint model {spec.name!r}: {s.endpoint} {s.summary()}",
                         "fix": fix})
    if len(reach.up) > 1 and not reach.usable:
        problems.append({"problem": f"endpoint model {spec.name!r}: {reach.summary()}",
                         "fix": f"name the model id with `model` in {source}"})
    return entry, problems


def doctor_command(args: argparse.Namespace) -> int:
    hw = probe()
    dirs = {"data": paths.data_dir(), "config": paths.config_dir(), "cache": paths.cache_dir()}
    problems = _hardware_problems(hw) + _path_problems(dirs)
    registry_path = paths.user_registry_path()
    report: dict[str, Any] = {
        "llama_cpp": hw.llama.model_dump() if hw.llama else None,
        "hardware": hw.model_dump(exclude={"llama"}),
        "paths": {**{k: str(v) for k, v in dirs.items()}, "user_registry": str(registry_path),
                  "user_registry_exists": registry_path.is_file()},
        "models_file": None, "models": [],
    }
    try:
        registry, source = load_models(_opt(args, "models"))
    except ConfigError as exc:
        registry, source = None, None
        if _opt(args, "models") is None and not registry_path.is_file():
            problems.append({"problem": f"no models registered (no {registry_path})",
                             "fix": "run `gra-local models pull-default` for the embedded SmolLM2-135M, "
                                    "`gra-local models add PATH` for a GGUF you have, or "
                                    "`gra-local models discover --add` to find them"})
        else:
            problems.append({"problem": str(exc), "fix": "edit the models file as the message says"})
    report["hosts"] = None
    if registry is not None and source is not None:
        report["models_file"] = source
        reaches = endpoint_reaches(registry.models, bool(_opt(args, "offline", False)))
        for spec in registry.models:
            if spec.is_endpoint:
                entry, found = _endpoint_report(spec, reaches[spec.name], source)
            else:
                entry, found = _model_report(spec, source, hw)
            report["models"].append(entry)
            problems += found
        report["hosts"] = run_hosts(registry.models)
    report["problems"] = problems
    if _opt(args, "json"):
        print(json.dumps(report, indent=2))
    else:
        _print_doctor(hw, report)
    return 1 if problems else 0


def _print_doctor(hw: Hardware, report: dict[str, Any]) -> None:
    b = hw.llama
    if b:
        offload = "yes" if b.gpu_offload else "no"
        print(f"llama.cpp: llama-cpp-python {b.version}, backend {b.backend} (GPU offload: {offload})")
        print(f"  system info: {b.system_info}")
    else:
        print("llama.cpp: not available")
    physical = f", {hw.cpu_physical} physical" if hw.cpu_physical else ""
    print(f"CPU: {hw.cpu_logical} logical cores{physical} ({hw.system} {hw.machine})")
    print(f"RAM: {gib(hw.ram_total_bytes)} total, {gib(hw.ram_available_bytes)} available")
    if not hw.gpus:
        print("GPUs: none found")
    for g in hw.gpus:
        kind = "unified memory, usable" if g.unified else "VRAM"
        print(f"GPU: {g.name}: {kind} {gib(g.memory_total_bytes)}, {gib(g.memory_free_bytes)} free")
    for note in hw.notes:
        print(f"  note: {note}")
    p = report["paths"]
    print("paths:")
    for key in ("data", "config", "cache"):
        print(f"  {key:14} {p[key]}")
    state = "" if p["user_registry_exists"] else " (not created yet)"
    print(f"  {'user registry':14} {p['user_registry']}{state}")
    if report["models_file"]:
        print(f"models ({report['models_file']}):")
    for m in report["models"]:
        if "plan" in m:
            plan = m["plan"]
            label = "won't fit" if plan["where"] == "wont_fit" else "refused" if m["parallel"]["refused"] else "ok"
            par = m["parallel"]
            print(f"  {m['name']:24} {label}: {m['file_type']}, {human_size(m['size_bytes'])}, n_ctx {m['n_ctx']}, "
                  f"{par['n_parallel']} sequence(s) in {par['kv_cells']} KV cells; {plan['reason']}")
            if m.get("note"):
                print(f"  {'':24} note: {m['note']}")
        elif "servers" in m:
            print(f"  {m['name']:24} {m['line']}")
            for server in m["servers"]:
                print(f"    {server['endpoint']}  {server['summary']}")
        else:
            print(f"  {m['name']:24} unusable: {m['error']}")
    if report["hosts"] is not None:
        hosts = ", ".join(report["hosts"]) or "none: every model is a local GGUF file"
        print(f"hosts a run would contact: {hosts}")
    problems = report["problems"]
    if not problems:
        print("no problems found")
        return
    print(f"{len(problems)} problem(s):")
    for pr in problems:
        print(f"  - {pr['problem']}\n    fix: {pr['fix']}")
