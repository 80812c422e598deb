"""EndpointConfig: validation as one line naming the key, URLs normalised and shown
without credentials, the key read from the environment and never shown."""

from __future__ import annotations

import pytest

from gra_local.backends.endpoint.config import (
    EndpointConfig,
    public_url,
    read_api_key,
    redact,
)
from gra_local.core.errors import ConfigError


def test_urls_are_normalised() -> None:
    config = EndpointConfig(name="m", urls=("http://gpu-box:8080", "https://api.example.com/v1/ "))
    assert config.urls == ("http://gpu-box:8080/v1", "https://api.example.com/v1")
    assert EndpointConfig(name="m", urls="http://h:1/v1").urls == ("http://h:1/v1",)  # type: ignore[arg-type]
    assert config.max_in_flight == 4 and config.server is None and config.model is None


def test_the_config_is_frozen() -> None:
    config = EndpointConfig(name="m", urls=("http://h:1/v1",))
    with pytest.raises(ValueError, match="frozen"):
        config.max_in_flight = 9  # type: ignore[misc]


@pytest.mark.parametrize(("fields", "error"), [
    ({"urls": ()}, r"key 'urls': .*at least 1"),
    ({"urls": ("ftp://h/v1",)}, r"key 'urls': ftp://h:80/v1: only http:// and https://"),
    ({"urls": ("http:///v1",)}, r"key 'urls': .*no host"),
    ({"urls": ("http://h:1/v1?key=abc",)}, r"key 'urls': http://h:1/v1: a base URL takes no credentials"),
    ({"urls": ("http://user:hunter2@h:1/v1",)}, r"key 'urls': http://h:1/v1: a base URL takes no credentials"),
    ({"urls": ("http://h:99999/v1",)}, r"key 'urls': <unparsable URL>: not a URL"),
    ({"server": "tgi"}, r"key 'server': Input should be 'llama.cpp', 'vllm'"),
    ({"max_in_flight": 0}, r"key 'max_in_flight': .*greater than or equal to 1"),
    ({"api_key_env": "MY-KEY"}, r"key 'api_key_env': 'MY-KEY' is not an environment variable name"),
    ({"endpoint": "x"}, r"key 'endpoint': Extra inputs are not permitted"),
])
def test_bad_fields_are_one_line_naming_the_key(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError, match=f"^endpoint model 'judge': {error}") as failed:
        EndpointConfig.checked(**{"name": "judge", "urls": ("http://h:1/v1",), **fields})
    assert "\n" not in str(failed.value)
    assert "hunter2" not in str(failed.value) and "abc" not in str(failed.value)


def test_public_url_has_no_credentials_and_names_the_port() -> None:
    assert public_url("http://user:pw@gpu-box:8080/v1?key=1#x") == "http://gpu-box:8080/v1"
    assert public_url("https://api.example.com/v1/") == "https://api.example.com:443/v1"
    assert public_url("http://[::1]/v1") == "http://[::1]:80/v1"


def test_the_key_is_read_at_connect_time_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    config = EndpointConfig(name="judge", urls=("http://h:1/v1",), api_key_env="JUDGE_KEY")
    assert read_api_key(EndpointConfig(name="j", urls=("http://h:1/v1",))) is None
    with pytest.raises(ConfigError, match=r"^endpoint model 'judge': environment variable JUDGE_KEY "
                                          r"\(its api_key_env\) is not set$"):
        read_api_key(config)
    monkeypatch.setenv("JUDGE_KEY", "sk-abc-123 ")
    key = read_api_key(config)
    assert key is not None and key.reveal() == "sk-abc-123"
    assert "sk-abc" not in repr(key) + str(key) + repr(config)
    assert redact("bad key sk-abc-123 given", [key.reveal()]) == "bad key *** given"


def test_from_spec_maps_a_models_toml_entry() -> None:
    from gra_local.core.config import ModelSpec

    spec = ModelSpec(name="judge", endpoint=["http://a:8080", "http://b:8080/v1"], model="qwen",
                     api_key_env="JUDGE_KEY", server="vllm", max_in_flight=8)
    config = EndpointConfig.from_spec(spec)
    assert config == EndpointConfig(name="judge", urls=("http://a:8080/v1", "http://b:8080/v1"),
                                    model="qwen", api_key_env="JUDGE_KEY", server="vllm",
                                    max_in_flight=8)
    with pytest.raises(ConfigError, match="model 'smol': not an endpoint model"):
        EndpointConfig.from_spec(ModelSpec(name="smol", path="/m/smol.gguf"))
