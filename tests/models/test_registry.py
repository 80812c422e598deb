"""The user registry: add, remove, set roles, register the default, name suggestions,
atomic writes."""

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
    set_roles,
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


def test_set_roles_rewrites_only_that_model(tmp_path: Path) -> None:
    a, _ = add_model(write_tiny_gguf(tmp_path / "a.gguf"), chat_format="chatml")
    b, _ = add_model(write_tiny_gguf(tmp_path / "b.gguf"), roles=[Role.GENERATOR])
    spec, where = set_roles("a", [Role.REVIEWER, Role.ADJUDICATOR, Role.REVIEWER])
    assert where == paths.user_registry_path()
    assert spec.roles == [Role.REVIEWER, Role.ADJUDICATOR]  # repeats dropped, order kept
    loaded = {m.name: m for m in load_registry(where).models}
    assert loaded["a"] == a.model_copy(update={"roles": [Role.REVIEWER, Role.ADJUDICATOR]})
    assert loaded["a"].chat_format == "chatml" and loaded["b"] == b  # nothing else changed
    assert [m.name for m in load_registry(where).models] == ["a", "b"]  # nor the order


def test_set_roles_refuses_unknown_models_and_no_role(tmp_path: Path) -> None:
    add_model(write_tiny_gguf(tmp_path / "a.gguf"))
    before = paths.user_registry_path().read_bytes()
    with pytest.raises(ConfigError, match=r"no model named 'x'.*registered: a.*--models file"):
        set_roles("x", [Role.REVIEWER])
    with pytest.raises(ConfigError, match="roles of 'a'"):
        set_roles("a", [])
    assert paths.user_registry_path().read_bytes() == before  # nothing written
