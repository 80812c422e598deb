"""parse_json: what comes back from a grammar-bound call is validated (truncation, JSON,
ranges, keys, keyword and instruction checks), whatever the grammar let through."""

from __future__ import annotations

import orjson
import pytest

from gra_local.core.grammars import InvalidOutput, parse_json
from gra_local.core.records import Annotation, DraftInstruction, InstructionVerdict, Scores

SCORES_OK = ('{"correctness": 8, "clarity": 9, "completeness": 7, "relevance": 10, '
             '"coherence": 8, "ethics": 10, "feedback": "  Fine.  "}')
DRAFT = {"keywords": ["rust", "borrow checker", "lifetimes"], "summary": "How borrows end.",
         "instruction": "Explain why this Rust function fails to compile."}


def draft(**changes: object) -> str:
    return orjson.dumps({**DRAFT, **changes}).decode()


def test_valid_scores() -> None:
    s = parse_json(SCORES_OK, Scores, "stop")
    assert (s.correctness, s.relevance, s.feedback) == (8, 10, "Fine.")
    assert s.mean == pytest.approx(52 / 6)


def test_valid_verdict_and_leading_whitespace() -> None:
    v = parse_json('  {"reasonable": "pass", "complete": "fail", "clear": "pass"}\n',
                   InstructionVerdict, "stop")
    assert v.passed is False
    assert parse_json('{"reasonable": "pass", "complete": "pass", "clear": "pass"}',
                      InstructionVerdict, "stop").passed


def test_truncated_is_invalid_even_when_the_json_is_valid() -> None:
    with pytest.raises(InvalidOutput) as info:
        parse_json(SCORES_OK, Scores, "length")
    assert info.value.reason.startswith("truncated")
    with pytest.raises(InvalidOutput, match="truncated"):
        parse_json('{"correctness": 8, "clar', Scores, "length")


@pytest.mark.parametrize("text", ["", "not json", '{"correctness": 8,', "{'a': 1}", "[1, 2"])
def test_invalid_json(text: str) -> None:
    with pytest.raises(InvalidOutput) as info:
        parse_json(text, Scores, "stop")
    assert info.value.reason == "not valid JSON"


@pytest.mark.parametrize("value", [11, -1, 8.5, '"8"x'])
def test_out_of_range_or_wrong_type_score(value: object) -> None:
    text = SCORES_OK.replace('"clarity": 9', f'"clarity": {value}')
    with pytest.raises(InvalidOutput) as info:
        parse_json(text, Scores, "stop")
    assert "clarity" in info.value.reason or info.value.reason == "not valid JSON"


def test_score_eleven_names_the_field() -> None:
    with pytest.raises(InvalidOutput) as info:
        parse_json(SCORES_OK.replace('"ethics": 10', '"ethics": 11'), Scores, "stop")
    assert info.value.reason.startswith("ethics:")


def test_missing_and_extra_keys() -> None:
    with pytest.raises(InvalidOutput, match="ethics"):
        parse_json(SCORES_OK.replace('"ethics": 10, ', ""), Scores, "stop")
    with pytest.raises(InvalidOutput, match="^bonus:"):
        parse_json(SCORES_OK.replace('{', '{"bonus": 1, ', 1), Scores, "stop")
    with pytest.raises(InvalidOutput):
        parse_json('{"reasonable": "yes", "complete": "pass", "clear": "pass"}',
                   InstructionVerdict, "stop")


def test_valid_draft_is_stripped() -> None:
    d = parse_json(draft(keywords=[" rust ", "borrow checker", "lifetimes"],
                         summary="  How borrows end. ", instruction="  " + DRAFT["instruction"]),
                   DraftInstruction, "stop")
    assert d.keywords == ["rust", "borrow checker", "lifetimes"]
    assert d.summary == "How borrows end."
    assert d.instruction == DRAFT["instruction"]


@pytest.mark.parametrize("keywords", [["rust", " ", "lifetimes"], ["rust", "a", "lifetimes"],
                                      ["", "rust", "lifetimes"]])
def test_blank_keyword(keywords: list[str]) -> None:
    with pytest.raises(InvalidOutput) as info:
        parse_json(draft(keywords=keywords), DraftInstruction, "stop")
    assert info.value.reason == "keywords: blank keyword"


@pytest.mark.parametrize("keywords", [["rust", "rust", "lifetimes"], ["Rust", "rust ", "lifetimes"]])
def test_repeated_keyword(keywords: list[str]) -> None:
    with pytest.raises(InvalidOutput) as info:
        parse_json(draft(keywords=keywords), DraftInstruction, "stop")
    assert info.value.reason == "keywords: repeated keyword"


def test_wrong_number_of_keywords() -> None:
    with pytest.raises(InvalidOutput, match="keywords"):
        parse_json(draft(keywords=["rust", "lifetimes"]), DraftInstruction, "stop")


@pytest.mark.parametrize("instruction", ["Explain it.", "   Do this   ", "Summarise"])
def test_short_instruction(instruction: str) -> None:
    with pytest.raises(InvalidOutput) as info:
        parse_json(draft(instruction=instruction), DraftInstruction, "stop")
    assert info.value.reason.startswith("instruction:")


def test_annotation_checks() -> None:
    text = orjson.dumps({"domain": "coding", "keywords": ["a b", "cd", "ef"],
                         "summary": "Ties them."}).decode()
    assert parse_json(text, Annotation, "stop").keywords == ["a b", "cd", "ef"]
    with pytest.raises(InvalidOutput, match="repeated"):
        parse_json(text.replace('"ef"', '"CD"'), Annotation, "stop")
    with pytest.raises(InvalidOutput, match="truncated"):
        parse_json(text, Annotation, "length")
