"""An endpoint model has no file: the GGUF code refuses it in one line naming its server, and
the registry's file bookkeeping (add, discovery) passes over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from ggufs import write_tiny_gguf

from gra_local.core.config import ModelSpec, Registry
from gra_local.core.errors import ModelError
from gra_local.models.found import Found
from gra_local.models.gguf_info import read_gguf_info
from gra_local.models.registry import add_model, read_user_registry, register_found, save_user_registry
from gra_local.models.resolve import check_model_file, model_path

JUDGE = ModelSpec(name="judge", endpoint="http://gpu-box:8080/v1")


def test_an_endpoint_model_has_no_gguf_file() -> None:
    for reach in (model_path, check_model_file):
        with pytest.raises(ModelError) as err:
            reach(JUDGE)
        assert err.value.message == ("model 'judge' is served by http://gpu-box:8080/v1: it has no "
                                     "GGUF file here (`gra-local doctor` shows its server)")


def test_the_registry_passes_over_an_endpoint_model(tmp_path: Path) -> None:
    save_user_registry(Registry(models=[JUDGE]))
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    spec, _ = add_model(gguf)  # compares paths with every registered model's
    found = write_tiny_gguf(tmp_path / "found.gguf")
    _, added, _ = register_found([Found(path=found, source="folder", name="found",
                                        info=read_gguf_info(found))])
    assert [name for name, _ in added] == ["found"]
    assert [m.name for m in read_user_registry().models] == ["judge", spec.name, "found"]
    assert read_user_registry().models[0] == JUDGE
