"""Random-weight GGUFs in a real model's shapes, for speed and memory at realistic sizes.

No weights are downloaded: the tensors of a Qwen2.5-0.5B or -1.5B (152k vocabulary, GQA,
tied embeddings) are written with `gguf.GGUFWriter` as F16 noise, then quantized by
llama.cpp itself (`llama_model_quantize`, Q4_K_M by default). The file has the real
model's size, layer shapes and vocabulary size, so decode speed, the grammar's cost per
token (it scales with the vocabulary) and memory behave like the real model; the text it
writes is noise. The tokenizer is byte-level BPE with merges for every pair of printable
ASCII characters, a ChatML template and the Qwen special tokens, so chat prompts format
and tokenize as they would for a real ChatML model.

    python scripts/shaped_gguf.py qwen2.5-0.5b OUT.gguf [--ftype Q4_K_M]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
FTYPES = {"Q4_K_M": 15, "Q8_0": 7, "F16": 1}


@dataclass(frozen=True)
class Shape:
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int = 151936
    n_ctx_train: int = 32768


SHAPES = {
    "qwen2.5-0.5b": Shape(n_layer=24, n_embd=896, n_head=14, n_head_kv=2, n_ff=4864),
    "qwen2.5-1.5b": Shape(n_layer=28, n_embd=1536, n_head=12, n_head_kv=2, n_ff=8960),
}


def _byte_chars() -> list[str]:
    """GPT-2's byte-to-unicode table: the 256 single-byte tokens of a byte-level BPE."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def vocabulary(n_vocab: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types (1 normal, 3 control) and merges, `n_vocab` tokens in all."""
    singles = _byte_chars()
    printable = [c for c in singles if c.isascii() and c.isalnum()] + [singles[ord(" ")]]
    pairs = [a + b for a in printable for b in printable]
    merges = [f"{p[0]} {p[1]}" for p in pairs]
    n_fill = n_vocab - len(singles) - len(pairs) - len(SPECIALS)
    tokens = singles + pairs + [f"<|fill_{i}|>" for i in range(n_fill)] + list(SPECIALS)
    types = [1] * (len(tokens) - len(SPECIALS)) + [3] * len(SPECIALS)
    return tokens, types, merges


def write_f16(shape: Shape, path: Path, seed: int = 0) -> Path:
    import gguf

    rng = np.random.default_rng(seed)
    noise = (rng.standard_normal(1 << 22, dtype=np.float32) * 0.02).astype(np.float16)

    def tensor(*dims: int) -> np.ndarray:  # noise tiled to the shape: fast, and enough
        return np.resize(noise, dims)

    a = "qwen2"
    w = gguf.GGUFWriter(str(path), a)
    w.add_name(path.stem)
    w.add_file_type(1)
    w.add_uint32(f"{a}.context_length", shape.n_ctx_train)
    w.add_uint32(f"{a}.embedding_length", shape.n_embd)
    w.add_uint32(f"{a}.block_count", shape.n_layer)
    w.add_uint32(f"{a}.feed_forward_length", shape.n_ff)
    w.add_uint32(f"{a}.attention.head_count", shape.n_head)
    w.add_uint32(f"{a}.attention.head_count_kv", shape.n_head_kv)
    w.add_float32(f"{a}.rope.freq_base", 1_000_000.0)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
    tokens, types, merges = vocabulary(shape.n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML_TEMPLATE)
    e, kv = shape.n_embd, shape.n_embd // shape.n_head * shape.n_head_kv
    ones = np.ones(e, dtype=np.float32)
    w.add_tensor("token_embd.weight", tensor(shape.n_vocab, e))
    w.add_tensor("output_norm.weight", ones)
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones)
        w.add_tensor(p + "ffn_norm.weight", ones)
        w.add_tensor(p + "attn_q.weight", tensor(e, e))
        w.add_tensor(p + "attn_q.bias", np.zeros(e, dtype=np.float32))
        w.add_tensor(p + "attn_k.weight", tensor(kv, e))
        w.add_tensor(p + "attn_k.bias", np.zeros(kv, dtype=np.float32))
        w.add_tensor(p + "attn_v.weight", tensor(kv, e))
        w.add_tensor(p + "attn_v.bias", np.zeros(kv, dtype=np.float32))
        w.add_tensor(p + "attn_output.weight", tensor(e, e))
        w.add_tensor(p + "ffn_gate.weight", tensor(shape.n_ff, e))
        w.add_tensor(p + "ffn_up.weight", tensor(shape.n_ff, e))
        w.add_tensor(p + "ffn_down.weight", tensor(e, shape.n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def quantize(src: Path, dst: Path, ftype: str, threads: int = 2) -> Path:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize returned {rc} for {src}")
    return dst


def shaped_gguf(name: str, out: Path, ftype: str = "Q4_K_M") -> Path:
    """`out` holding a random-weight `name`-shaped model; reused when it already exists."""
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    f16 = out.with_suffix(".f16.tmp")
    write_f16(SHAPES[name], f16)
    if ftype == "F16":
        f16.replace(out)
        return out
    tmp = out.with_suffix(".tmp")
    quantize(f16, tmp, ftype)
    f16.unlink()
    tmp.replace(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("out", type=Path)
    ap.add_argument("--ftype", choices=sorted(FTYPES), default="Q4_K_M")
    args = ap.parse_args()
    t = time.perf_counter()
    path = shaped_gguf(args.shape, args.out, args.ftype)
    print(f"{path}: {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
