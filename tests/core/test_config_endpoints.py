"""Endpoint models in models.toml (issue 13): their keys, exactly one of path and endpoint,
each kind's keys only, URLs without credentials; errors name the file, the model and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import config_error, write

from gra_local.core.config import ModelSpec, Registry, Role, load_registry


def test_endpoint_keys_are_parsed(tmp_path: Path) -> None:
    path = write(tmp_path / "models.toml", """
[[models]]
name = "judge-8b"
endpoint = "http://gpu-box:8080/v1"
model = "qwen2.5-7b-instruct"
api_key_env = "JUDGE_KEY"
server = "llama.cpp"
max_in_flight = 8
roles = ["reviewer", "adjudicator"]

[[models]]
name = "spread"
endpoint = ["http://a:8000/v1", "https://b.example/api/v1"]

[[models]]
name = "local"
path = "local.gguf"
""")
    judge, spread, local = load_registry(path).models
    assert judge.is_endpoint and judge.path is None
    assert judge.endpoints == ["http://gpu-box:8080/v1"]
    assert (judge.model, judge.api_key_env, judge.server, judge.max_in_flight) == \
        ("qwen2.5-7b-instruct", "JUDGE_KEY", "llama.cpp", 8)
    assert judge.roles == [Role.REVIEWER, Role.ADJUDICATOR]
    assert spread.endpoints == ["http://a:8000/v1", "https://b.example/api/v1"]
    assert (spread.model, spread.server, spread.max_in_flight) == (None, None, 4)  # defaults
    assert not local.is_endpoint and local.endpoints == []
    assert local.path == str(tmp_path / "local.gguf")  # only file paths are resolved


@pytest.mark.parametrize("body", [
    'path = "a.gguf"\nendpoint = "http://gpu-box:8080/v1"',  # both
    "roles = [\"reviewer\"]",  # neither
])
def test_exactly_one_of_path_and_endpoint(tmp_path: Path, body: str) -> None:
    msg = config_error(write(tmp_path / "models.toml", f'[[models]]\nname = "judge"\n{body}\n'))
    assert "model 'judge' (models[0])" in msg
    assert "exactly one of 'path'" in msg and "'endpoint'" in msg


@pytest.mark.parametrize("line, key", [
    ("n_ctx = 8192", "n_ctx"), ('sha256 = "' + "a" * 64 + '"', "sha256"),
    ('chat_format = "chatml"', "chat_format"), ("n_gpu_layers = 10", "n_gpu_layers"),
    ("n_parallel = 4", "n_parallel"), ("n_threads = 2", "n_threads"),
])
def test_a_gguf_key_on_an_endpoint_model_is_refused(tmp_path: Path, line: str, key: str) -> None:
    path = write(tmp_path / "models.toml",
                 f'[[models]]\nname = "judge"\nendpoint = "http://gpu-box:8080/v1"\n{line}\n')
    msg = config_error(path)
    assert "model 'judge'" in msg and f"'{key}' apply to GGUF models only" in msg


@pytest.mark.parametrize("line, key", [
    ('model = "qwen"', "model"), ('api_key_env = "KEY"', "api_key_env"),
    ('server = "vllm"', "server"), ("max_in_flight = 2", "max_in_flight"),
])
def test_an_endpoint_key_on_a_gguf_model_is_refused(tmp_path: Path, line: str, key: str) -> None:
    msg = config_error(write(tmp_path / "models.toml", f'[[models]]\nname = "smol"\npath = "a.gguf"\n{line}\n'))
    assert "model 'smol'" in msg and f"'{key}' apply to endpoint models only" in msg


@pytest.mark.parametrize("line, key, words", [
    ('endpoint = "http://user:hunter2@gpu-box:8080/v1"', "endpoint", "no credentials"),
    ('endpoint = ["http://a:1/v1", "http://b:2/v1?key=hunter2"]', "endpoint", "URL 2 of 2: a URL here"),
    ('endpoint = "ftp://gpu-box/v1"', "endpoint", "http://"),
    ('endpoint = "http://gpu-box:99999/v1"', "endpoint", "not a URL"),
    ("endpoint = []", "endpoint", "at least one URL"),
    ('endpoint = "http://a:1/v1"\nserver = "tgi"', "server", "llama.cpp"),
    ('endpoint = "http://a:1/v1"\nmax_in_flight = 0', "max_in_flight", "greater than or equal to 1"),
    ('endpoint = "http://a:1/v1"\napi_key_env = "MY-KEY"', "api_key_env", "pattern"),
])
def test_bad_endpoint_values_name_the_key_never_the_secret(tmp_path: Path, line: str, key: str,
                                                           words: str) -> None:
    msg = config_error(write(tmp_path / "models.toml", f'[[models]]\nname = "judge"\n{line}\n'))
    assert f"model 'judge' (models[0]) key '{key}'" in msg and words in msg
    assert "hunter2" not in msg


def test_a_dump_read_back_validates() -> None:
    """Keys at their defaults count as absent: the user registry and `set_roles` write a
    spec's dump and validate it again (every key is in a dump)."""
    models = [ModelSpec(name="smol", path="/m/smol.gguf", n_ctx=2048),
              ModelSpec(name="judge", endpoint="http://gpu-box:8080/v1", max_in_flight=2)]
    again = Registry.model_validate(Registry(models=models).model_dump())
    assert again.models == models
    json_again = Registry.model_validate(Registry(models=models).model_dump(mode="json"))
    assert json_again.models == models
