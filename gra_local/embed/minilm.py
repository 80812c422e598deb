"""all-MiniLM-L6-v2 in plain numpy: the BERT encoder, mean pooling over real tokens and L2
normalisation, the same computation sentence-transformers runs, without torch.

Weights are read from model.safetensors by a small reader (8-byte little-endian header
length, JSON header, raw little-endian data) over a memory map.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from tokenizers import Tokenizer

from gra_local.core.errors import EmbedderError
from gra_local.embed.minilm_files import NAME, WEIGHTS_SHA256, WEIGHTS_SIZE

MAX_SEQ_LENGTH = 256  # sentence_bert_config.json: longer texts are truncated
# padded tokens per forward pass: its activations stay ~40 MB (8192 took 180 MB beside the
# weights, and was ~1.4x slower: the blocks fall out of the CPU caches)
BATCH_TOKENS = 2048
MAX_BATCH = 128
ATTN_BYTES = 16 << 20  # attention scores computed at once (the rest of a batch waits its turn)

_HOW_TO_FIX = "run `gra-local models pull-embedder` again (or pass --no-dedup)"


class BertConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    layer_norm_eps: float
    max_position_embeddings: int
    vocab_size: int
    hidden_act: str


class _PoolingConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    word_embedding_dimension: int
    pooling_mode_mean_tokens: bool


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a read-only array over one memory map."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    try:
        with open(path, "rb") as fh:
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        (n,) = struct.unpack("<Q", buf[:8])
        header = json.loads(bytes(buf[8:8 + n]))
        base = 8 + n
        out: dict[str, np.ndarray] = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            start, end = info["data_offsets"]
            dtype = np.dtype(dtypes[info["dtype"]]).newbyteorder("<")
            shape = tuple(info["shape"])
            count = int(np.prod(shape, dtype=np.int64))
            if base + end > len(buf) or end - start != count * dtype.itemsize:
                raise ValueError(f"tensor {key} lies outside the file or has the wrong size")
            out[key] = np.frombuffer(buf, dtype=dtype, count=count, offset=base + start).reshape(shape)
        return out
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise EmbedderError(f"{path}: not a readable safetensors file ({exc}); {_HOW_TO_FIX}") from None


# erfc(z) = t·exp(-z² + P(t)), t = 1/(1 + z/2): Numerical Recipes' Chebyshev fit, relative
# error < 1.2e-7 everywhere, i.e. exact to float32, so GELU matches torch's erf form
# without scipy. Coefficients of P from the highest power down.
_ERFC = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806,
         0.09678418, 0.37409196, 1.00002368, -1.26551223)
_GELU_ROWS = 32  # rows per block: the temporaries of one block stay in the CPU cache


def _gelu_(x: np.ndarray) -> np.ndarray:
    """GELU, erf form, in place on a float32 array: x·Φ(x), Φ(x) = 1/2 + sign(x)·(1/2 -
    erfc(|x|/√2)/2); ~30 in-place passes over each cache-sized block."""
    flat = x.reshape(-1, x.shape[-1])
    for lo in range(0, flat.shape[0], _GELU_ROWS):
        blk = flat[lo:lo + _GELU_ROWS]
        z = np.abs(blk)
        z *= np.float32(0.7071067811865476)
        t = z * np.float32(0.5)
        t += np.float32(1.0)
        np.reciprocal(t, out=t)
        poly = np.full_like(t, _ERFC[0])
        for coef in _ERFC[1:]:
            poly *= t
            poly += np.float32(coef)
        z *= z
        poly -= z
        np.exp(poly, out=poly)
        poly *= t
        poly *= np.float32(-0.5)
        poly += np.float32(0.5)  # 1/2 - Φ(-|x|)
        np.copysign(poly, blk, out=poly)  # a ufunc `where=` would be ~50x slower here
        poly += np.float32(0.5)  # Φ(x)
        blk *= poly
    return x


def _layer_norm_(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis, in place (x is always a fresh temporary here)."""
    x -= x.mean(axis=-1, keepdims=True)
    var = np.mean(x * x, axis=-1, keepdims=True)
    var += np.float32(eps)
    x /= np.sqrt(var)
    x *= weight
    x += bias
    return x


def _attention(heads: np.ndarray, bias: np.ndarray, scale: np.float32, ctx: np.ndarray) -> None:
    """Softmax attention of heads (3 × b × h × length × d: q, k, v) into ctx (b × length ×
    h × d), a few sequences at a time: the whole batch's scores (b × h × length²) would be
    100 MB at 256 tokens; the products are per sequence anyway, so this is no slower."""
    _, b, h, length, _ = heads.shape
    rows = max(1, ATTN_BYTES // (h * length * length * 4))
    for lo in range(0, b, rows):
        q, k, v = heads[:, lo:lo + rows]
        scores = (q * scale) @ k.transpose(0, 1, 3, 2)
        scores += bias[lo:lo + rows]
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        ctx[lo:lo + rows] = (scores @ v).transpose(0, 2, 1, 3)


class _Layer:
    def __init__(self, t: dict[str, np.ndarray], i: int) -> None:
        p = f"encoder.layer.{i}."
        a = p + "attention.self."
        # one fused QKV matmul instead of three (its copy is the only one: 11 MB in all); the
        # other weights stay [out, in] in the memory map, read transposed by the same GEMMs
        self.w_qkv = np.ascontiguousarray(np.concatenate(
            [t[a + "query.weight"], t[a + "key.weight"], t[a + "value.weight"]]).T)
        self.b_qkv = np.concatenate([t[a + "query.bias"], t[a + "key.bias"], t[a + "value.bias"]])
        self.w_o = t[p + "attention.output.dense.weight"].T
        self.b_o = t[p + "attention.output.dense.bias"]
        self.ln1 = (t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"])
        self.w_i = t[p + "intermediate.dense.weight"].T
        self.b_i = t[p + "intermediate.dense.bias"]
        self.w_out = t[p + "output.dense.weight"].T
        self.b_out = t[p + "output.dense.bias"]
        self.ln2 = (t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"])


class MiniLMEmbedder:
    """Sentence embeddings (384-d, unit length) for dedup; satisfies core.dedup.Embedder."""

    name = NAME
    sha256 = WEIGHTS_SHA256  # pinned at pull time; hashing 90 MB per load would cost ~0.3 s

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)
        self.config = self._config()
        self.dim = self.config.hidden_size
        self._heads = self.config.num_attention_heads
        self._tokenizer = self._load_tokenizer()
        weights_path = self.model_dir / "model.safetensors"
        size = weights_path.stat().st_size if weights_path.is_file() else None
        if size != WEIGHTS_SIZE:
            found = "missing" if size is None else f"{size} bytes, expected {WEIGHTS_SIZE}"
            raise EmbedderError(f"{weights_path}: {found}; {_HOW_TO_FIX}")
        tensors = read_safetensors(weights_path)
        try:
            self._load(tensors)
        except (KeyError, ValueError) as exc:
            raise EmbedderError(f"{weights_path}: not the expected BERT weights ({exc}); "
                                f"{_HOW_TO_FIX}") from None

    def _read_json(self, name: str) -> object:
        path = self.model_dir / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EmbedderError(f"{path}: cannot read ({exc}); {_HOW_TO_FIX}") from None

    def _config(self) -> BertConfig:
        try:
            config = BertConfig.model_validate(self._read_json("config.json"))
            pooling = _PoolingConfig.model_validate(self._read_json("1_Pooling/config.json"))
        except ValidationError as exc:
            raise EmbedderError(f"{self.model_dir}: unexpected model config ({exc}); {_HOW_TO_FIX}") from None
        if config.hidden_act != "gelu" or not pooling.pooling_mode_mean_tokens:
            raise EmbedderError(f"{self.model_dir}: expected GELU and mean pooling, found "
                                f"{config.hidden_act!r} and another pooling; {_HOW_TO_FIX}")
        return config

    def _load_tokenizer(self) -> Tokenizer:
        path = self.model_dir / "tokenizer.json"
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises bare Exception subclasses
            raise EmbedderError(f"{path}: cannot load the tokenizer ({exc}); {_HOW_TO_FIX}") from None
        # tokenizer.json ships with 128-token truncation and fixed padding; we pad ourselves
        tok.enable_truncation(max_length=min(MAX_SEQ_LENGTH, self.config.max_position_embeddings))
        tok.no_padding()
        return tok

    def _load(self, t: dict[str, np.ndarray]) -> None:
        c = self.config
        self._word = t["embeddings.word_embeddings.weight"]
        self._pos = t["embeddings.position_embeddings.weight"]
        # token type is always 0 for single sentences: fold it into the position table
        self._pos_type = (self._pos + t["embeddings.token_type_embeddings.weight"][0]).astype(np.float32)
        self._ln_emb = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        self._layers = [_Layer(t, i) for i in range(c.num_hidden_layers)]
        if self._word.shape != (c.vocab_size, c.hidden_size) or self._word.dtype != np.float32:
            raise ValueError(f"word embeddings {self._word.shape} {self._word.dtype}")
        if self._layers[0].w_qkv.shape != (c.hidden_size, 3 * c.hidden_size):
            raise ValueError(f"QKV weights {self._layers[0].w_qkv.shape}")

    def embed(self, texts: list[str]) -> np.ndarray:
        """n×dim float32, unit rows, in the order of `texts`."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # one text at a time: encode_batch would start the tokenizers thread pool, which
        # warns (and turns itself off) in every worker process forked afterwards
        ids = [np.asarray(self._tokenizer.encode(t).ids, dtype=np.int64) for t in texts]
        order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths pad little
        start = 0
        while start < len(order):
            longest = len(ids[order[min(start + MAX_BATCH, len(order)) - 1]])
            size = max(1, min(MAX_BATCH, BATCH_TOKENS // max(longest, 1)))
            chunk = order[start:start + size]
            out[chunk] = self._forward([ids[i] for i in chunk])
            start += size
        return out

    def _forward(self, seqs: list[np.ndarray]) -> np.ndarray:
        c = self.config
        b, length = len(seqs), max(len(s) for s in seqs)
        n, hidden, eps = b * length, c.hidden_size, c.layer_norm_eps
        ids = np.zeros((b, length), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros((b, length), dtype=np.float32)
        for row, seq in enumerate(seqs):
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1.0
        # tokens as one (b·length) × hidden matrix: one large GEMM per linear layer is ~1.6x
        # faster than numpy's per-sequence loop over a 3-D operand
        x = (self._word[ids] + self._pos_type[:length]).reshape(n, hidden)
        x = _layer_norm_(x, *self._ln_emb, eps)
        bias = ((mask - 1.0) * np.float32(1e9))[:, None, None, :]  # padded keys get no weight
        h, d = self._heads, hidden // self._heads
        scale = np.float32(1.0 / np.sqrt(d))
        ctx = np.empty((b, length, h, d), dtype=np.float32)
        for layer in self._layers:
            qkv = x @ layer.w_qkv
            qkv += layer.b_qkv
            _attention(qkv.reshape(b, length, 3, h, d).transpose(2, 0, 3, 1, 4), bias, scale, ctx)
            del qkv  # each large temporary goes before the next one is made
            attn = ctx.reshape(n, hidden) @ layer.w_o
            attn += layer.b_o
            attn += x
            x = _layer_norm_(attn, *layer.ln1, eps)
            inter = x @ layer.w_i
            inter += layer.b_i
            out = _gelu_(inter) @ layer.w_out
            del inter
            out += layer.b_out
            out += x
            x = _layer_norm_(out, *layer.ln2, eps)
        summed = np.einsum("bld,bl->bd", x.reshape(b, length, hidden), mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)
