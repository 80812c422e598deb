"""The capability table and vLLM's version rule."""

from __future__ import annotations

import pytest

from gra_local.backends.endpoint.capabilities import CAPABILITIES, version_tuple, vllm_field
from gra_local.backends.endpoint.config import SERVER_KINDS


def test_every_kind_has_one_row() -> None:
    assert set(CAPABILITIES) == set(SERVER_KINDS)
    assert CAPABILITIES["llama.cpp"].structured == "grammar"
    assert {k for k, c in CAPABILITIES.items() if c.penalty_field} == {"llama.cpp", "vllm"}


@pytest.mark.parametrize(("text", "parsed"), [
    ("0.10.2", (0, 10, 2)), ("v0.11.0rc1", (0, 11, 0)), ("0.6.3.post1", (0, 6, 3)), ("1.2", (1, 2, 0)),
    ("", None), (None, None), ("nightly", None),
])
def test_versions_are_read(text: str | None, parsed: tuple[int, ...] | None) -> None:
    assert version_tuple(text) == parsed


@pytest.mark.parametrize(("version", "field"), [
    ("0.12.0", "structured_outputs"), ("0.10.2", "structured_outputs"), ("garbled", "structured_outputs"),
    ("0.10.1", "guided_grammar"), ("0.7.3", "guided_grammar"), ("0.6.5", "guided_grammar"),
    ("0.6.4.post1", "guided_json"), ("0.4.0", "guided_json"),
])
def test_vllm_field_by_version(version: str, field: str) -> None:
    assert vllm_field(version) == field
