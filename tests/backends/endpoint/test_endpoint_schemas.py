"""The JSON schema of each grammar's output type, with the grammar's own bounds."""

from __future__ import annotations

import pytest

from gra_local.backends.endpoint.schemas import SCHEMAS, schema_for, strict_schema
from gra_local.core.errors import BackendError
from gra_local.core.grammars import FEEDBACK_MAX, GRAMMARS, INSTRUCTION_MAX, KEYWORD_MAX, SUMMARY_MAX
from gra_local.core.records import Annotation, DraftInstruction, InstructionVerdict, Scores


def test_every_grammar_has_its_models_schema() -> None:
    assert len(SCHEMAS) == len(GRAMMARS)
    for out_type, gbnf in GRAMMARS.items():
        name, schema = schema_for(gbnf)
        assert name == out_type.__name__
        assert list(schema["properties"]) == list(out_type.model_fields)


def test_the_grammars_bounds_are_in_the_schema() -> None:
    scores = schema_for(GRAMMARS[Scores])[1]["properties"]
    assert scores["feedback"]["maxLength"] == FEEDBACK_MAX
    assert (scores["ethics"]["minimum"], scores["ethics"]["maximum"]) == (0, 10)
    annotation = schema_for(GRAMMARS[Annotation])[1]["properties"]
    assert annotation["keywords"]["items"]["maxLength"] == KEYWORD_MAX
    assert (annotation["keywords"]["minItems"], annotation["keywords"]["maxItems"]) == (3, 3)
    assert annotation["summary"]["maxLength"] == SUMMARY_MAX
    draft = schema_for(GRAMMARS[DraftInstruction])[1]["properties"]
    assert draft["instruction"]["maxLength"] == INSTRUCTION_MAX
    verdict = schema_for(GRAMMARS[InstructionVerdict])[1]
    assert verdict["additionalProperties"] is False


def test_schemas_handed_out_are_copies() -> None:
    schema_for(GRAMMARS[Scores])[1]["properties"].clear()
    assert schema_for(GRAMMARS[Scores])[1]["properties"]


def test_an_unknown_grammar_is_a_clear_error() -> None:
    with pytest.raises(BackendError, match="takes JSON schemas, not GBNF grammars"):
        schema_for('root ::= "yes" | "no"')


def test_strict_schema_requires_everything_and_drops_defaults() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "string", "default": ""},
        "b": {"type": "array", "items": {"type": "object", "properties": {"c": {"type": "integer"}}}},
        "default": {"type": "string"}}, "required": ["b"]}
    strict = strict_schema(schema)
    assert strict["required"] == ["a", "b", "default"] and strict["additionalProperties"] is False
    assert "default" not in strict["properties"]["a"] and "default" in strict["properties"]
    assert strict["properties"]["b"]["items"]["required"] == ["c"]
    assert schema["required"] == ["b"]  # the original is untouched
