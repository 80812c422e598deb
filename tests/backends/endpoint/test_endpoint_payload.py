"""Request bodies per server kind, checked against each server's documented payload, and
the reading of reply bodies."""

from __future__ import annotations

import orjson
import pytest

from gra_local.backends.endpoint.payload import Malformed, chat_body, parse_reply
from gra_local.core.backend import ChatRequest
from gra_local.core.grammars import GRAMMARS
from gra_local.core.records import DOMAINS, Annotation, InstructionVerdict, Scores

MESSAGES = [{"role": "system", "content": "Judge."}, {"role": "user", "content": "Text."}]
COMMON = {"model": "m", "messages": MESSAGES, "temperature": 0.3, "top_p": 0.9, "max_tokens": 200,
          "seed": 11, "stream": False}


def ask(grammar: str | None = None, repeat_penalty: float = 1.0) -> ChatRequest:
    return ChatRequest(messages=MESSAGES, temperature=0.3, top_p=0.9, max_tokens=200, seed=11,
                       repeat_penalty=repeat_penalty, grammar=grammar)


def test_llama_cpp_takes_our_gbnf_and_repeat_penalty() -> None:
    # llama.cpp server README / llama-cpp-python server types: `grammar`, `repeat_penalty`
    body = chat_body("llama.cpp", "b5432", "m", ask(GRAMMARS[Scores], 1.1))
    assert body == {**COMMON, "repeat_penalty": 1.1, "grammar": GRAMMARS[Scores]}
    # llama-cpp-python defaults repeat_penalty to 1.1: 1.0 is sent, not left out
    assert chat_body("llama.cpp", None, "m", ask())["repeat_penalty"] == 1.0


@pytest.mark.parametrize(("version", "field"), [
    ("0.11.0", {"structured_outputs": {"grammar": GRAMMARS[Scores]}}),
    ("0.10.2", {"structured_outputs": {"grammar": GRAMMARS[Scores]}}),
    (None, {"structured_outputs": {"grammar": GRAMMARS[Scores]}}),
    ("0.10.1.1", {"guided_grammar": GRAMMARS[Scores]}),
    ("0.6.5", {"guided_grammar": GRAMMARS[Scores]}),
])
def test_vllm_takes_the_grammar_in_its_versions_field(version: str | None, field: dict) -> None:
    # vLLM structured outputs docs: extra body `structured_outputs: {"grammar": ...}` (0.10.2+),
    # `guided_grammar` before; sampling's repetition_penalty
    body = chat_body("vllm", version, "m", ask(GRAMMARS[Scores], 1.05))
    assert body == {**COMMON, "repetition_penalty": 1.05, **field}


def test_old_vllm_gets_the_json_schema() -> None:
    body = chat_body("vllm", "0.6.3.post1", "m", ask(GRAMMARS[InstructionVerdict]))
    schema = body["guided_json"]
    assert schema["required"] == ["reasonable", "complete", "clear"]
    assert schema["properties"]["clear"]["enum"] == ["pass", "fail"]
    assert "guided_grammar" not in body and "structured_outputs" not in body


def test_ollama_gets_response_format_json_schema_and_no_penalty() -> None:
    # Ollama openai/openai.go: response_format {"type": "json_schema", "json_schema": {"schema"}}
    # becomes the native `format`; no repeat penalty field in its OpenAI layer
    body = chat_body("ollama", "0.6.2", "m", ask(GRAMMARS[InstructionVerdict], 1.3))
    rf = body.pop("response_format")
    assert body == COMMON
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["schema"]["properties"]["reasonable"]["enum"] == ["pass", "fail"]


def test_lm_studio_gets_named_json_schema() -> None:
    # LM Studio structured output docs: response_format json_schema {name, strict, schema}
    body = chat_body("lmstudio", None, "m", ask(GRAMMARS[Annotation]))
    js = body["response_format"]["json_schema"]
    assert (js["name"], js["strict"]) == ("Annotation", True)
    assert js["schema"]["properties"]["domain"]["enum"] == list(DOMAINS)
    assert "repeat_penalty" not in body and "grammar" not in body


def test_openai_gets_a_strict_schema() -> None:
    # OpenAI structured outputs: strict mode wants every property required, no extras
    body = chat_body("openai", None, "m", ask(GRAMMARS[Scores]))
    js = body["response_format"]["json_schema"]
    assert js["strict"] is True
    schema = js["schema"]
    assert schema["required"] == list(schema["properties"]) and "feedback" in schema["required"]
    assert schema["additionalProperties"] is False
    assert "default" not in schema["properties"]["feedback"]
    assert schema["properties"]["feedback"]["maxLength"] == 60


def test_free_text_carries_no_structure_field() -> None:
    for kind in ("llama.cpp", "vllm", "ollama", "lmstudio", "openai"):
        body = chat_body(kind, None, "m", ask())
        assert not {"grammar", "structured_outputs", "guided_grammar", "response_format"} & set(body)


def reply(**fields: object) -> bytes:
    return orjson.dumps({"choices": [{"message": {"role": "assistant", "content": "ok"},
                                      "finish_reason": "stop"}], **fields})


def test_a_reply_is_read_none_safe() -> None:
    result = parse_reply(reply(), 1.5)
    assert (result.text, result.finish_reason, result.prompt_tokens, result.completion_tokens,
            result.prompt_evaluated, result.seconds) == ("ok", "stop", 0, 0, None, 1.5)
    full = parse_reply(reply(usage={"prompt_tokens": 30, "completion_tokens": 4,
                                    "prompt_tokens_details": {"cached_tokens": 24}}), 0.1)
    assert (full.prompt_tokens, full.completion_tokens, full.prompt_evaluated) == (30, 4, 6)
    nulls = parse_reply(orjson.dumps({"choices": [{"message": {"content": None}, "finish_reason": None}],
                                      "usage": {"prompt_tokens": None}}), 0.1)
    assert (nulls.text, nulls.finish_reason, nulls.prompt_tokens) == ("", "stop", 0)


def test_length_is_kept_and_other_reasons_are_stops() -> None:
    cut = orjson.dumps({"choices": [{"message": {"content": "{"}, "finish_reason": "length"}]})
    assert parse_reply(cut, 0.1).finish_reason == "length"
    eos = orjson.dumps({"choices": [{"message": {"content": "x"}, "finish_reason": "eos"}]})
    assert parse_reply(eos, 0.1).finish_reason == "stop"


@pytest.mark.parametrize("raw", [b"<html>502</html>", b"", b'{"choices": []}', b'{"error": "x"}',
                                 b'{"choices": [{"text": "legacy"}]}', b"[]"])
def test_malformed_replies(raw: bytes) -> None:
    with pytest.raises(Malformed):
        parse_reply(raw, 0.1)
