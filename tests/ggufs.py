"""Tiny GGUF models for tests: written in ~3 ms, loaded by real llama.cpp in ~10 ms.

The model is a 1-block llama (n_embd 32, 2 heads, ff 64, ctx 2048, vocab 356: <unk> <s>
</s>, the 256 byte tokens, <|im_start|> <|im_end|>, the SentencePiece space and the 94
printable ASCII characters) whose next-token logits depend only on the last token, and
only on whether it is a newline.  Attention and FFN projections are all zero, so the
residual stream stays the token's embedding; see ``write_tiny_gguf`` for the weights.

After any token but a newline (``token_logits(eos_bias)``):

* EOS ``</s>`` and ``<|im_end|>``: ``eos_bias`` (default 3.05);
* ``"``: 3.02; space (``▁``): 3.01; the other "word" tokens -- ``a``..``z``,
  ``,`` ``.`` ``}`` ``]``: 3.0 (the small steps fix the order in which llama.cpp's
  top_p sees tied tokens, so its cut drops a letter, never EOS, space or quote);
* everything else (other printable characters, the byte tokens, ``<unk>``, ``<s>``,
  ``<|im_start|>``): -20, i.e. never sampled unless a grammar allows nothing better.

After a newline -- the chat template's ``<|im_start|>assistant\n``, so the first token
of every reply -- only the letters: ``o`` 3.02, the rest 3.0.  Replies are never empty.

Why these numbers (llama-cpp-python's sampler chain is penalties -> grammar -> top_k ->
typical -> top_p -> min_p -> temp -> dist, the filters seeing temperature-1 logits):

* 34 tokens near logit 3 fit in top_k=40, and EOS, ranked first, is never cut by top_p or
  min_p; P(EOS) per step is about 2/34 whatever the temperature, so free text stops
  after ~14 tokens on average (finish_reason "stop" in ~98% of replies with
  max_tokens=64; "length" with a tiny max_tokens).
* Inside a grammar-constrained JSON string ``"`` competes with the word tokens, so
  strings close after ~30 characters; after a value ``,`` ``}`` ``]`` are likely.
* Greedy decoding (temperature 0): free text is ``"o"`` with "stop"; grammar output is
  minimal (strings close at once, ``"`` ranks above the letters).
* ``eos_bias=-20`` gives a model that never stops by itself (always "length").
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

N_EMBD, N_FF, N_HEAD, N_LAYER, N_CTX = 32, 64, 2, 1, 2048
WORD_LOGIT, SPACE_LOGIT, QUOTE_LOGIT, OTHER_LOGIT, DEFAULT_EOS_BIAS = 3.0, 3.01, 3.02, -20.0, 3.05
FIRST_LOGIT = 3.02  # "o" after a newline: greedy replies are "o"
SPACE = "\u2581"  # SentencePiece's visible space
WORD_TOKENS = [*"abcdefghijklmnopqrstuvwxyz", SPACE, ",", ".", "}", "]"]

# token types (llama.cpp): 1 normal, 2 unknown, 3 control, 6 byte
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6


def _vocab() -> tuple[list[str], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [_UNKNOWN, _CONTROL, _CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [_BYTE] * 256
    tokens += ["<|im_start|>", "<|im_end|>", SPACE]
    types += [_CONTROL, _CONTROL, _NORMAL]
    printable = [chr(c) for c in range(0x21, 0x7F)]  # '!'..'~'
    tokens += printable
    types += [_NORMAL] * len(printable)
    return tokens, types


TOKENS, TOKEN_TYPES = _vocab()
TOKEN_ID = {t: i for i, t in enumerate(TOKENS)}
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
IM_START_ID, IM_END_ID = TOKEN_ID["<|im_start|>"], TOKEN_ID["<|im_end|>"]

# general.file_type values (llama.cpp's LLAMA_FTYPE_*) for the types we can write
_FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7}


def token_logits(eos_bias: float = DEFAULT_EOS_BIAS, *, after_newline: bool = False) -> np.ndarray:
    """The fixed logit every token gets next; it depends only on the last token.

    After a newline (the chat template's "<|im_start|>assistant\\n", so the first token
    of a reply) only the letters can come, ``o`` first: replies are never empty.
    """
    logits = np.full(len(TOKENS), OTHER_LOGIT, dtype=np.float32)
    if after_newline:
        for t in "abcdefghijklmnopqrstuvwxyz":
            logits[TOKEN_ID[t]] = WORD_LOGIT
        logits[TOKEN_ID["o"]] = FIRST_LOGIT
        return logits
    for t in WORD_TOKENS:
        logits[TOKEN_ID[t]] = WORD_LOGIT
    logits[TOKEN_ID[SPACE]] = SPACE_LOGIT
    logits[TOKEN_ID['"']] = QUOTE_LOGIT
    logits[EOS_ID] = logits[IM_END_ID] = eos_bias
    return logits


def write_tiny_gguf(
    path: Path,
    *,
    chat_template: str | None = CHATML_TEMPLATE,
    eos_bias: float = DEFAULT_EOS_BIAS,
    architecture: str = "llama",
    file_type: str = "F32",
    name: str | None = "tiny-test",
    context_length: int = N_CTX,
    extra_kv: dict[str, str | int | float | bool] | None = None,
) -> Path:
    """Write a tiny llama-architecture GGUF (~100 KB) to ``path`` and return ``path``.

    ``file_type`` is one of F32, F16, Q8_0, Q4_0 (the 2-D weights are stored in that type,
    norms stay F32).  ``architecture`` only renames the metadata prefix: llama.cpp loads
    the result only for "llama".  ``extra_kv`` adds metadata (str/int/float/bool values;
    ints are written as uint32).
    """
    import gguf
    from gguf.quants import quantize

    if file_type not in _FILE_TYPES:
        raise ValueError(f"file_type must be one of {sorted(_FILE_TYPES)}, got {file_type!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    a = architecture
    w = gguf.GGUFWriter(str(path), a)
    if name is not None:
        w.add_name(name)
    w.add_file_type(_FILE_TYPES[file_type])
    w.add_uint32(f"{a}.vocab_size", len(TOKENS))
    w.add_uint32(f"{a}.context_length", context_length)
    w.add_uint32(f"{a}.embedding_length", N_EMBD)
    w.add_uint32(f"{a}.block_count", N_LAYER)
    w.add_uint32(f"{a}.feed_forward_length", N_FF)
    w.add_uint32(f"{a}.rope.dimension_count", N_EMBD // N_HEAD)
    w.add_uint32(f"{a}.attention.head_count", N_HEAD)
    w.add_uint32(f"{a}.attention.head_count_kv", N_HEAD)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(TOKENS)
    w.add_token_scores([-float(i) for i in range(len(TOKENS))])
    w.add_token_types(TOKEN_TYPES)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_unk_token_id(UNK_ID)
    w.add_eot_token_id(IM_END_ID)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_bool("tokenizer.ggml.add_space_prefix", False)  # prompts tokenize verbatim
    if chat_template is not None:
        w.add_chat_template(chat_template)
    for key, value in (extra_kv or {}).items():
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        else:
            w.add_string(key, str(value))

    qtype = getattr(gguf.GGMLQuantizationType, file_type)

    def matrix(tensor_name: str, data: np.ndarray) -> None:
        data = data.astype(np.float32)
        if file_type == "F32":
            w.add_tensor(tensor_name, data)
        elif file_type == "F16":
            w.add_tensor(tensor_name, data.astype(np.float16))
        else:
            w.add_tensor(tensor_name, quantize(data, qtype), raw_dtype=qtype)

    # Two kinds of input token: the newline byte embeds to e_nl = ones on dims 16..31,
    # every other token to e_any = ones on dims 0..15.  With attention and FFN zero the
    # residual stream stays the embedding; after output_norm (RMS norm, weight ones) it is
    # sqrt(2) * e.  Row i of output.weight holds logit_any[i] / (16 sqrt 2) on dims 0..15
    # and logit_nl[i] / (16 sqrt 2) on dims 16..31, so the model is an exact bigram table.
    n_vocab, half = len(TOKENS), N_EMBD // 2
    ones = np.ones(N_EMBD, dtype=np.float32)
    embd = np.zeros((n_vocab, N_EMBD), dtype=np.float32)
    embd[:, :half] = 1.0
    nl = TOKEN_ID["<0x0A>"]
    embd[nl, :half], embd[nl, half:] = 0.0, 1.0
    matrix("token_embd.weight", embd)
    w.add_tensor("output_norm.weight", ones)
    scale = 1.0 / (half * np.sqrt(2.0))
    out = np.empty((n_vocab, N_EMBD), dtype=np.float32)
    out[:, :half] = token_logits(eos_bias)[:, None] * scale
    out[:, half:] = token_logits(eos_bias, after_newline=True)[:, None] * scale
    # the logit steps are 0.01 apart: keep this matrix F32 (F16 in F16 files), since
    # 4-/8-bit blocks would blur them; real "mostly Q4_0" files mix types the same way
    if file_type == "F16":
        w.add_tensor("output.weight", out.astype(np.float16))
    else:
        w.add_tensor("output.weight", out)
    for i in range(N_LAYER):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        for proj in ("attn_q", "attn_k", "attn_v", "attn_output"):
            matrix(f"blk.{i}.{proj}.weight", np.zeros((N_EMBD, N_EMBD)))
        matrix(f"blk.{i}.ffn_gate.weight", np.zeros((N_FF, N_EMBD)))
        matrix(f"blk.{i}.ffn_up.weight", np.zeros((N_FF, N_EMBD)))
        matrix(f"blk.{i}.ffn_down.weight", np.zeros((N_EMBD, N_FF)))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_not_gguf(path: Path) -> Path:
    """A file that is plainly not GGUF (a text file)."""
    path = Path(path)
    path.write_bytes(b"<html>this is not a model</html>\n")
    return path


def write_truncated_gguf(path: Path, *, cut_bytes: int = 4096) -> Path:
    """A valid tiny GGUF whose tensor data is cut short (like an interrupted download)."""
    path = write_tiny_gguf(path)
    os.truncate(path, path.stat().st_size - cut_bytes)
    return path


def write_corrupt_header_gguf(path: Path) -> Path:
    """GGUF magic and a supported version, then garbage where the header should be."""
    path = Path(path)
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + bytes(range(7, 250)) * 4)
    return path


def write_gguf_with_version(path: Path, version: int) -> Path:
    """A tiny GGUF with its version field patched (e.g. 1 or 99: unsupported)."""
    path = write_tiny_gguf(path)
    with open(path, "r+b") as f:
        f.seek(4)
        f.write(struct.pack("<I", version))
    return path
