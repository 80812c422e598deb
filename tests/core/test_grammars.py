"""GBNF grammars compile and hold on real llama.cpp; parse_json validates what comes back."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gra_local.core import grammars as g
from gra_local.core.config import DEFAULT_SAMPLING, Role
from gra_local.core.grammars import GRAMMARS, InvalidOutput, parse_json, token_budget
from gra_local.core.records import (
    DOMAINS,
    SCORE_FIELDS,
    Annotation,
    DraftInstruction,
    InstructionVerdict,
    Scores,
)

llama_cpp = pytest.importorskip("llama_cpp")

ROLE_OF = {Scores: Role.REVIEWER, InstructionVerdict: Role.REVIEWER,
           Annotation: Role.ANNOTATOR, DraftInstruction: Role.GENERATOR}
MESSAGES = [{"role": "system", "content": "Reply with JSON only."},
            {"role": "user", "content": "Judge this sample."}]


@pytest.fixture(scope="module")
def llm(tiny_gguf: Path):  # type: ignore[no-untyped-def]
    model = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=2048, verbose=False)
    yield model
    model.close()


@pytest.mark.parametrize("out_type", list(GRAMMARS), ids=lambda t: t.__name__)
def test_grammar_compiles(out_type: type) -> None:
    grammar = llama_cpp.LlamaGrammar.from_string(GRAMMARS[out_type], verbose=False)
    assert grammar is not None


@pytest.mark.parametrize("out_type", list(GRAMMARS), ids=lambda t: t.__name__)
def test_tiny_model_output_follows_the_grammar(llm, out_type: type) -> None:  # type: ignore[no-untyped-def]
    grammar = llama_cpp.LlamaGrammar.from_string(GRAMMARS[out_type], verbose=False)
    sampling = DEFAULT_SAMPLING[ROLE_OF[out_type]]
    semantic_failures = []
    for seed in range(10):
        out = llm.create_chat_completion(
            messages=MESSAGES, grammar=grammar, seed=seed, max_tokens=token_budget(out_type),
            temperature=sampling.temperature, top_p=sampling.top_p,
            repeat_penalty=sampling.repeat_penalty)
        choice = out["choices"][0]
        text = choice["message"]["content"]
        # the grammar, not the token limit, ends every reply
        assert choice["finish_reason"] == "stop", (seed, text)
        data = orjson.loads(text)
        assert list(data) == list(out_type.model_fields), (seed, text)  # key order is fixed
        if out_type in (Scores, InstructionVerdict):
            parsed = parse_json(text, out_type, choice["finish_reason"])
            if out_type is Scores:
                assert all(0 <= getattr(parsed, f) <= 10 for f in SCORE_FIELDS)
                assert len(parsed.feedback) <= 2 * g.FEEDBACK_MAX
            continue
        assert all(isinstance(k, str) and k for k in data["keywords"]) and len(data["keywords"]) == 3
        if out_type is Annotation:
            assert data["domain"] in DOMAINS
        # nonsense text from the tiny model may fail the semantic checks, nothing else
        try:
            parse_json(text, out_type, choice["finish_reason"])
        except InvalidOutput as exc:
            assert exc.reason.startswith(("keywords:", "instruction:")), exc.reason
            semantic_failures.append(exc.reason)
    assert len(semantic_failures) < 10, semantic_failures


# --- the token budget covers the longest reply a grammar admits -------------------------


def _longest(out_type: type) -> str:
    """The longest ASCII reply each grammar admits (escapes are two characters each)."""
    kw, sm = "k" * g.KEYWORD_MAX, "\\n" * g.SUMMARY_MAX
    keywords = f'"keywords": ["{kw}", "{kw}", "{kw}"]'
    if out_type is Scores:
        scores = ", ".join(f'"{f}": 10' for f in SCORE_FIELDS)
        return "{" + scores + ', "feedback": "' + "\\n" * g.FEEDBACK_MAX + '"}'
    if out_type is InstructionVerdict:
        return '{"reasonable": "pass", "complete": "pass", "clear": "pass"}'
    if out_type is Annotation:
        return '{"domain": "creative_writing", ' + keywords + f', "summary": "{sm}"}}'
    return "{" + keywords + f', "summary": "{sm}", "instruction": "' + "\\t" * g.INSTRUCTION_MAX + '"}'


@pytest.mark.parametrize("out_type", list(GRAMMARS), ids=lambda t: t.__name__)
def test_token_budget_covers_longest_ascii_reply(out_type: type) -> None:
    text = _longest(out_type)
    orjson.loads(text)  # well-formed
    # an ASCII character is at least one token in any vocabulary
    assert len(text) <= token_budget(out_type)


# --- parse_json ------------------------------------------------------------------------

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
