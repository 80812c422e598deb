"""GBNF grammars for every structured step, and the parsers that validate what comes back.

Measured on SmolLM2-135M (shared/measured-notes.md): a JSON schema with a free string
gave 3/12 valid answers, while a hand-written grammar with scores first and the feedback
bounded *by the grammar* gave 12/12. So each grammar here fixes the key order, limits
integers to 0–10 and bounds every string's length; pydantic validates the result anyway,
and a reply cut by the token limit is a failure whatever it looks like.
"""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from gra_local.core.records import (
    DOMAINS,
    SCORE_FIELDS,
    VERDICT_FIELDS,
    Annotation,
    DraftInstruction,
    InstructionVerdict,
    Scores,
)

FEEDBACK_MAX = 60
KEYWORD_MAX = 32
SUMMARY_MAX = 200
INSTRUCTION_MAX = 400

# JSON string characters: no quote, backslash or control character, or a simple escape.
_COMMON = r'''
char ::= [^"\\\x00-\x1f] | "\\" ["\\/nt]
kwchar ::= [^"\\\x00-\x1f,]
'''


def _string(name: str, lo: int, hi: int, charset: str = "char") -> str:
    return f"{name} ::= {charset}{{{lo},{hi}}}\n"


def _keywords() -> str:
    return r'"\"keywords\": [\"" kw "\", \"" kw "\", \"" kw "\"]"'


def _lit(key: str, first: bool = False) -> str:
    sep = "" if first else ", "
    return '"' + sep.replace('"', '\\"') + '\\"' + key + '\\": "'


def scores_grammar() -> str:
    parts = [_lit(f, i == 0) + " score" for i, f in enumerate(SCORE_FIELDS)]
    body = ' "{" ' + " ".join(parts) + ' ", \\"feedback\\": \\"" fb "\\"}"'
    return (f"root ::={body}\nscore ::= [0-9] | \"10\"\n"
            + _string("fb", 0, FEEDBACK_MAX) + _COMMON)


def verdict_grammar() -> str:
    parts = [_lit(f, i == 0) + ' "\\"" pf "\\""' for i, f in enumerate(VERDICT_FIELDS)]
    return 'root ::= "{" ' + " ".join(parts) + ' "}"\npf ::= "pass" | "fail"\n'


def annotation_grammar() -> str:
    domains = " | ".join(f'"{d}"' for d in DOMAINS)
    return (
        'root ::= "{\\"domain\\": \\"" domain "\\", " ' + _keywords()
        + ' ", \\"summary\\": \\"" sm "\\"}"\n'
        f"domain ::= {domains}\n"
        + _string("kw", 2, KEYWORD_MAX, "kwchar") + _string("sm", 10, SUMMARY_MAX) + _COMMON
    )


def draft_grammar() -> str:
    return (
        'root ::= "{" ' + _keywords() + ' ", \\"summary\\": \\"" sm "\\", \\"instruction\\": \\"" ins "\\"}"\n'
        + _string("kw", 2, KEYWORD_MAX, "kwchar") + _string("sm", 10, SUMMARY_MAX)
        + _string("ins", 10, INSTRUCTION_MAX) + _COMMON
    )


class InvalidOutput(Exception):
    """A model's reply could not be used; `reason` is short and goes into the stats."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


M = TypeVar("M", bound=BaseModel)


def parse_json(text: str, model: type[M], finish_reason: str) -> M:
    """Validate a reply. A reply that hit the token limit is never valid."""
    if finish_reason == "error":
        raise InvalidOutput("no reply (the model's worker failed)")
    if finish_reason == "length":
        raise InvalidOutput("truncated (hit max_tokens)")
    try:
        data = orjson.loads(text.strip())
    except orjson.JSONDecodeError:
        raise InvalidOutput("not valid JSON") from None
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidOutput(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return _check_text(obj)


def _check_text(obj: M) -> M:
    """Strings must carry text: reject blank keywords and whitespace-only fields."""
    if isinstance(obj, (Annotation, DraftInstruction)):
        words = [k.strip() for k in obj.keywords]
        if any(len(k) < 2 for k in words):
            raise InvalidOutput("keywords: blank keyword")
        if len({k.lower() for k in words}) < 3:
            raise InvalidOutput("keywords: repeated keyword")
        obj.keywords = words
        obj.summary = obj.summary.strip()
    if isinstance(obj, DraftInstruction):
        obj.instruction = obj.instruction.strip()
        if len(obj.instruction.split()) < 3:
            raise InvalidOutput("instruction: fewer than three words")
    if isinstance(obj, Scores):
        obj.feedback = obj.feedback.strip()
    return obj


# Longest reply each grammar admits, in characters. Structured calls get twice this many
# tokens (a token is at least one character, a rare non-ASCII one a few bytes), so a
# grammar-bound reply cannot hit the token limit: its grammar bounds its length instead.
MAX_CHARS = {
    Scores: 200 + FEEDBACK_MAX,
    InstructionVerdict: 90,
    Annotation: 120 + 3 * KEYWORD_MAX + SUMMARY_MAX,
    DraftInstruction: 120 + 3 * KEYWORD_MAX + SUMMARY_MAX + INSTRUCTION_MAX,
}


def token_budget(out_type: type[BaseModel]) -> int:
    return 2 * MAX_CHARS[out_type]


GRAMMARS = {
    Scores: scores_grammar(),
    InstructionVerdict: verdict_grammar(),
    Annotation: annotation_grammar(),
    DraftInstruction: draft_grammar(),
}
