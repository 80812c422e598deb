"""scripts/shaped_gguf.py: a random-weight Qwen2-shaped GGUF that real llama.cpp loads,
formats ChatML for and tokenizes with byte-level BPE (a small shape, so it takes a second)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import shaped_gguf  # noqa: E402


def test_vocabulary_has_the_size_asked_and_specials_last() -> None:
    tokens, types, merges = shaped_gguf.vocabulary(70_000)
    assert len(tokens) == len(types) == 70_000
    assert len(set(tokens)) == len(tokens)
    assert tokens[-3:] == list(shaped_gguf.SPECIALS) and types[-3:] == [3, 3, 3]
    assert all(a + b in set(tokens) for a, b in (m.split(" ") for m in merges[:500]))


def test_a_small_qwen2_shape_loads_and_chats(tmp_path: Path) -> None:
    import llama_cpp

    shape = shaped_gguf.Shape(n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128,
                              n_vocab=20_000, n_ctx_train=2048)
    f16 = shaped_gguf.write_f16(shape, tmp_path / "small.f16.gguf")
    q8 = shaped_gguf.quantize(f16, tmp_path / "small.q8_0.gguf", "Q8_0", threads=1)
    llm = llama_cpp.Llama(str(q8), n_ctx=256, n_threads=1, verbose=False)
    assert llm.n_vocab() == 20_000
    assert llm.chat_format == "chatml"
    vocab = shaped_gguf.vocabulary(20_000)[0]
    # byte-level BPE: " " is the byte char Ġ; pairs of letters merge, Ġ+pair has no merge
    assert [vocab[t] for t in llm.tokenize(b"ab cd", add_bos=False, special=True)] == ["ab", "Ġ", "cd"]
    out = llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=4, seed=1)
    assert out["usage"]["completion_tokens"] >= 1
