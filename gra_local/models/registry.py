"""Which models file applies: --models FILE, else the user registry, else a clear error."""

from __future__ import annotations

from pathlib import Path

from gra_local.core import paths
from gra_local.core.config import DEFAULT_MODEL_PATH, Registry, load_registry
from gra_local.core.errors import ConfigError
from gra_local.models import default as default_model

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


def register_default() -> tuple[Path, bool]:
    """Add the embedded model to the user registry unless a model already uses it."""
    user = paths.user_registry_path()
    if user.is_file():
        registry = load_registry(user)
        if any(m.path == DEFAULT_MODEL_PATH for m in registry.models):
            return user, False
        names = {m.name for m in registry.models}
        if default_model.DEFAULT_NAME in names:
            raise ConfigError(f"{user}: a model named {default_model.DEFAULT_NAME!r} already "
                              "exists with another path; rename it to register the default")
        text = user.read_text(encoding="utf-8")
    else:
        user.parent.mkdir(parents=True, exist_ok=True)
        text = "# gra-local user registry; keys are documented in the project's models.toml\n"
    entry = (
        f'\n[[models]]\nname = "{default_model.DEFAULT_NAME}"\npath = "{DEFAULT_MODEL_PATH}"\n'
        f'sha256 = "{default_model.SHA256}"\n'
        'roles = ["generator", "reviewer", "adjudicator", "annotator"]\n'
    )
    tmp = user.with_suffix(".toml.tmp")
    tmp.write_text(text.rstrip("\n") + "\n" + entry, encoding="utf-8")
    tmp.replace(user)
    return user, True

