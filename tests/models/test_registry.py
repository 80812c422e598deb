"""The user registry: add, remove, register the default, name suggestions, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from ggufs import write_not_gguf, write_tiny_gguf

from gra_local.core import paths
from gra_local.core.config import Role, Sampling, load_registry
from gra_local.core.errors import ConfigError, ModelError
from gra_local.models import embedded as default
from gra_local.models.registry import (
    add_model,
    load_models,
    read_user_registry,
    register_default,
    remove_model,
    save_user_registry,
    suggest_name,
)


def test_add_then_remove(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "Qwen2.5 1.5B (q4).gguf")
    spec, where = add_model(gguf, roles=[Role.REVIEWER])
    assert spec.name == "Qwen2.5-1.5B-q4" and where == paths.user_registry_path()
    registry, source = load_models(None)
    assert [m.name for m in registry.models] == ["Qwen2.5-1.5B-q4"]
    assert registry.models[0].roles == [Role.REVIEWER]
    with pytest.raises(ConfigError, match="already registered"):
        add_model(gguf)
    remove_model("Qwen2.5-1.5B-q4")
    assert read_user_registry().models == []
    assert gguf.exists()
    with pytest.raises(ConfigError, match="no model named"):
        remove_model("Qwen2.5-1.5B-q4")


def test_add_refuses_bad_files_and_templateless_ggufs(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a GGUF"):
        add_model(write_not_gguf(tmp_path / "x.gguf"))
    bare = write_tiny_gguf(tmp_path / "bare.gguf", chat_template=None)
    with pytest.raises(ConfigError, match="--chat-format"):
        add_model(bare)
    spec, _ = add_model(bare, chat_format="chatml")
    assert spec.chat_format == "chatml"
    assert not paths.user_registry_path().with_suffix(".toml.tmp").exists()


def test_duplicate_names_get_suffixes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_tiny_gguf(tmp_path / "a" / "m.gguf")
    b = write_tiny_gguf(tmp_path / "b" / "m.gguf")
    assert add_model(a)[0].name == "m" and add_model(b)[0].name == "m-2"
    with pytest.raises(ConfigError, match="pick another --name"):
        add_model(write_tiny_gguf(tmp_path / "c.gguf"), name="m")
    assert suggest_name("???", set()) == "model"


def test_default_registration_is_idempotent_and_round_trips(tmp_path: Path) -> None:
    _, added = register_default()
    _, again = register_default()
    assert added and not again
    registry = read_user_registry()
    registry.models[0].sampling[Role.GENERATOR] = Sampling(temperature=0.7)
    save_user_registry(registry)
    loaded = load_registry(paths.user_registry_path())
    assert loaded.models[0].name == default.DEFAULT_NAME and loaded.models[0].is_default
    assert loaded.models[0].sampling_for(Role.GENERATOR).temperature == 0.7


def test_no_registry_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="pull-default"):
        load_models(None)
