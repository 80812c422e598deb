"""The JSON schema a grammar stands for, for servers that take a schema but no GBNF.

`gra_local.core.grammars.GRAMMARS` maps each judged output type to its GBNF; this reverses
it (GBNF text → the pydantic model's JSON schema) and adds the bounds the grammar enforces
and the model does not (string lengths, the annotation's domains), so a schema-bound reply
is as short as a grammar-bound one. The reply is validated by the same parser either way.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from gra_local.core.errors import BackendError
from gra_local.core.grammars import (
    FEEDBACK_MAX,
    GRAMMARS,
    INSTRUCTION_MAX,
    KEYWORD_MAX,
    SUMMARY_MAX,
)
from gra_local.core.records import DOMAINS, Annotation, DraftInstruction, Scores

JsonObject = dict[str, Any]

_BOUNDS: dict[type[BaseModel], dict[str, JsonObject]] = {
    Scores: {"feedback": {"maxLength": FEEDBACK_MAX}},
    Annotation: {"domain": {"enum": list(DOMAINS)},
                 "keywords": {"items": {"type": "string", "minLength": 2, "maxLength": KEYWORD_MAX}},
                 "summary": {"minLength": 10, "maxLength": SUMMARY_MAX}},
    DraftInstruction: {"keywords": {"items": {"type": "string", "minLength": 2, "maxLength": KEYWORD_MAX}},
                       "summary": {"minLength": 10, "maxLength": SUMMARY_MAX},
                       "instruction": {"minLength": 10, "maxLength": INSTRUCTION_MAX}},
}
"""What each grammar in core/grammars.py bounds beyond the pydantic model."""


def _schema(out_type: type[BaseModel]) -> JsonObject:
    schema = out_type.model_json_schema()
    for name, extra in _BOUNDS.get(out_type, {}).items():
        schema["properties"][name].update(extra)
    return schema


SCHEMAS: dict[str, tuple[str, JsonObject]] = {
    gbnf: (out_type.__name__, _schema(out_type)) for out_type, gbnf in GRAMMARS.items()
    if isinstance(out_type, type) and issubclass(out_type, BaseModel)
}
"""GBNF text → (the output type's name, its JSON schema)."""


def schema_for(grammar: str) -> tuple[str, JsonObject]:
    """(name, JSON schema) of the output type a grammar was made from; a grammar that is
    none of core's cannot be sent to a schema-only server."""
    found = SCHEMAS.get(grammar)
    if found is None:
        raise BackendError("this server takes JSON schemas, not GBNF grammars, and the "
                           "grammar asked for was not made from a known output type")
    name, schema = found
    return name, copy.deepcopy(schema)


def strict_schema(schema: JsonObject) -> JsonObject:
    """The schema as OpenAI's strict mode takes it: every property required, no defaults,
    no additional properties (the reply's optional fields are then always written)."""
    out = copy.deepcopy(schema)
    _make_strict(out)
    return out


def _make_strict(node: JsonObject) -> None:
    node.pop("default", None)
    properties = node.get("properties")
    if isinstance(properties, dict):
        node["required"] = list(properties)
        node["additionalProperties"] = False
        for child in properties.values():
            _make_strict(child)
    for key in ("items", "additionalItems"):
        if isinstance(node.get(key), dict):
            _make_strict(node[key])
    for key in ("anyOf", "allOf", "oneOf"):
        for child in node.get(key, ()):
            _make_strict(child)
    for child in node.get("$defs", {}).values():
        _make_strict(child)
