"""The tiny test GGUFs load in real llama.cpp and behave as tests/ggufs.py promises."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from ggufs import write_tiny_gguf

llama_cpp = pytest.importorskip("llama_cpp")

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")
    start = time.perf_counter()
    model = llama_cpp.Llama(model_path=str(path), n_ctx=512, verbose=False)
    assert time.perf_counter() - start < 5.0  # ~10 ms in practice
    yield model
    model.close()


def test_metadata(llm) -> None:  # type: ignore[no-untyped-def]
    assert llm.metadata["general.architecture"] == "llama"
    assert "<|im_start|>" in llm.metadata["tokenizer.chat_template"]
    # special tokens are single tokens; any text tokenizes (byte fallback)
    tokens = llm.tokenize("<|im_start|>user\nhé!<|im_end|>".encode(), add_bos=False, special=True)
    assert tokens[0] == llm.tokenize(b"<|im_start|>", add_bos=False, special=True)[0]
    assert llm.detokenize(tokens[1:-1]).decode() == "user\nhé!"


def test_free_text_mostly_stops(llm) -> None:  # type: ignore[no-untyped-def]
    reasons: Counter[str] = Counter()
    for seed in range(20):
        out = llm.create_chat_completion(
            messages=MESSAGES, max_tokens=64, temperature=0.8, seed=seed
        )
        choice = out["choices"][0]
        reasons[choice["finish_reason"]] += 1
        assert choice["message"]["content"]  # replies are never empty
    assert reasons["stop"] >= 15, reasons


def test_tiny_max_tokens_gives_length(llm) -> None:  # type: ignore[no-untyped-def]
    out = llm.create_chat_completion(messages=MESSAGES, max_tokens=2, temperature=0.8, seed=1)
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 2


def test_grammar_output_is_valid(llm) -> None:  # type: ignore[no-untyped-def]
    grammar = llama_cpp.LlamaGrammar.from_string('root ::= "{\\"a\\": " [0-9] "}"', verbose=False)
    for seed in range(3):
        out = llm.create_chat_completion(
            messages=MESSAGES, max_tokens=32, temperature=0.8, seed=seed, grammar=grammar
        )
        choice = out["choices"][0]
        assert choice["finish_reason"] == "stop"
        value = json.loads(choice["message"]["content"])
        assert set(value) == {"a"} and 0 <= value["a"] <= 9


def test_json_schema_strings_terminate(llm) -> None:  # type: ignore[no-untyped-def]
    schema = {
        "type": "object",
        "properties": {"reason": {"type": "string"}, "ok": {"type": "boolean"}},
        "required": ["reason", "ok"],
    }
    for seed in range(5):
        out = llm.create_chat_completion(
            messages=MESSAGES,
            max_tokens=256,
            temperature=0.8,
            seed=seed,
            response_format={"type": "json_object", "schema": schema},
        )
        choice = out["choices"][0]
        assert choice["finish_reason"] == "stop"
        value = json.loads(choice["message"]["content"])
        assert isinstance(value["reason"], str) and isinstance(value["ok"], bool)


def test_never_stops_with_low_eos_bias(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "nostop.gguf", eos_bias=-20.0)
    model = llama_cpp.Llama(model_path=str(path), n_ctx=512, verbose=False)
    try:
        out = model.create_chat_completion(
            messages=MESSAGES, max_tokens=40, temperature=0.8, seed=3
        )
        assert out["choices"][0]["finish_reason"] == "length"
    finally:
        model.close()


@pytest.mark.parametrize("file_type", ["F16", "Q8_0", "Q4_0"])
def test_other_file_types_load_and_stop(tmp_path: Path, file_type: str) -> None:
    path = write_tiny_gguf(tmp_path / f"{file_type}.gguf", file_type=file_type)
    model = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False)
    try:
        reasons = Counter(
            model.create_chat_completion(
                messages=MESSAGES, max_tokens=64, temperature=0.8, seed=seed
            )["choices"][0]["finish_reason"]
            for seed in range(10)
        )
        assert reasons["stop"] >= 7, reasons
    finally:
        model.close()


def test_no_chat_template(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "bare.gguf", chat_template=None)
    model = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False)
    try:
        assert "tokenizer.chat_template" not in model.metadata
    finally:
        model.close()
