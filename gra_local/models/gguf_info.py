"""Read what a GGUF file says about itself without loading its weights.

A small header parser of our own (the format is documented in ggml's docs/gguf.md):
it reads only the metadata and the tensor table through mmap, skips big arrays
(tokenizer vocabularies) without decoding them, and turns every failure into one
readable ``ModelError`` that names the file.  Name tables for quantization types come
from the ``gguf`` package.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gra_local.core.errors import ModelError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

# GGUF metadata value types -> struct format (fixed-size scalars).
_SCALAR_FMT = {
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"
}
_STRING, _ARRAY = 8, 9


class GGUFInfo(BaseModel):
    path: str
    size_bytes: int
    gguf_version: int
    architecture: str
    name: str | None
    file_type: str
    parameter_count: int
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    head_count: int | None
    head_count_kv: int | None
    chat_template: str | None
    tokenizer_model: str | None
    split_count: int | None
    vocab_size: int | None = None
    """Length of tokenizer.ggml.tokens (else {arch}.vocab_size): sizes the logits buffer."""


class _Corrupt(Exception):
    """Internal: the header cannot be parsed (reason in args[0])."""


def _past_end(pos: int) -> _Corrupt:
    return _Corrupt(f"header runs past the end of the file at byte {pos}, truncated?")


class _Parser:
    def __init__(self, buf: Any, endian: str) -> None:
        self.buf = buf
        self.end = len(buf)
        self.pos = 0
        self.e = endian

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > self.end:
            raise _past_end(self.pos)
        (value,) = struct.unpack_from(self.e + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.end:
            raise _past_end(self.pos)
        self.pos += n

    def string(self, strict: bool = False) -> str:
        n = self.take("Q")
        start = self.pos
        self.skip(n)
        raw = bytes(self.buf[start : self.pos])
        try:  # keys must be UTF-8; values are only shown, so llama.cpp's leniency is kept
            return raw.decode("utf-8", errors="strict" if strict else "replace")
        except UnicodeDecodeError as exc:
            raise _Corrupt(f"invalid UTF-8 string at byte {start}") from exc

    def value(self, vtype: int) -> Any:
        if vtype in _SCALAR_FMT:
            return self.take(_SCALAR_FMT[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype, count = self.take("I"), self.take("Q")
            if itype in _SCALAR_FMT:  # fixed-size items: skip in one step
                self.skip(count * struct.calcsize(_SCALAR_FMT[itype]))
            elif itype == _STRING:  # variable-size: walk the lengths only
                buf, e, end, pos = self.buf, self.e + "Q", self.end, self.pos
                for _ in range(count):
                    if pos + 8 > end:
                        raise _past_end(pos)
                    pos += 8 + struct.unpack_from(e, buf, pos)[0]
                if pos > end:
                    raise _past_end(pos)
                self.pos = pos
            elif itype == _ARRAY:
                for _ in range(count):
                    self.value(_ARRAY)
            else:
                raise _Corrupt(f"unknown array item type {itype}")
            return ("array", itype, count)  # arrays are not kept
        raise _Corrupt(f"unknown metadata value type {vtype} at byte {self.pos - 4}")


def _file_type_name(meta: dict[str, Any], tensor_types: Counter[int]) -> str:
    from gguf.constants import GGMLQuantizationType, LlamaFileType

    ft = meta.get("general.file_type")
    if isinstance(ft, int) and not isinstance(ft, bool):
        try:
            name = LlamaFileType(ft & ~1024).name  # 1024 = "guessed" flag
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    if tensor_types:
        ttype = tensor_types.most_common(1)[0][0]
        try:
            return GGMLQuantizationType(ttype).name
        except ValueError:
            pass
    return "unknown"


def _opt_int(meta: dict[str, Any], key: str) -> int | None:
    v = meta.get(key)
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def _opt_str(meta: dict[str, Any], key: str) -> str | None:
    v = meta.get(key)
    return v if isinstance(v, str) else None


def read_gguf_info(path: Path) -> GGUFInfo:
    """Parse the header and tensor table of ``path``; raise ModelError on any problem."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, not a GGUF model file")
    if not path.is_file():
        raise ModelError(f"{path}: not a regular file, not a GGUF model file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if size == 0:
                raise ModelError(f"{path}: not a GGUF file (the file is empty)")
            if head[:4] != GGUF_MAGIC:
                raise ModelError(f"{path}: not a GGUF file (starts with {head[:4]!r})")
            if len(head) < 8:
                raise ModelError(f"{path}: corrupt GGUF header (file is only {size} bytes)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _parse(path, mm, size)
    except ModelError:
        raise
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file ({exc.strerror or exc})") from None
    except Exception as exc:  # anything unforeseen in a hostile header
        raise ModelError(f"{path}: corrupt GGUF header ({type(exc).__name__}: {exc})") from None


def _parse(path: Path, buf: Any, size: int) -> GGUFInfo:
    # imported here: the gguf package costs ~0.1 s to import and is needed only now
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    (version,) = struct.unpack_from("<I", buf, 4)
    endian = "<"
    if version not in SUPPORTED_VERSIONS and version & 0xFFFF == 0:
        swapped = struct.unpack_from(">I", buf, 4)[0]
        if swapped in SUPPORTED_VERSIONS:  # a big-endian GGUF
            version, endian = swapped, ">"
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise ModelError(f"{path}: unsupported GGUF version {version} (supported: {supported})")

    p = _Parser(buf, endian)
    p.pos = 8
    meta: dict[str, Any] = {}
    types: Counter[int] = Counter()
    param_count = 0
    data_end = 0
    try:
        n_tensors, n_kv = p.take("Q"), p.take("Q")
        for _ in range(n_kv):
            key = p.string(strict=True)
            meta[key] = p.value(p.take("I"))
        for _ in range(n_tensors):
            p.skip(p.take("Q"))  # tensor name
            n_dims = p.take("I")
            if n_dims > 8:
                raise _Corrupt(f"tensor with {n_dims} dimensions")
            n_el = 1
            for _ in range(n_dims):
                n_el *= p.take("Q")
            ttype, offset = p.take("I"), p.take("Q")
            try:
                block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
            except (ValueError, KeyError):
                raise _Corrupt(f"unknown tensor type {ttype}") from None
            types[ttype] += n_el
            param_count += n_el
            data_end = max(data_end, offset + n_el // block * type_size)
        alignment = meta.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0:
            raise _Corrupt(f"bad general.alignment {alignment!r}")
    except _Corrupt as exc:
        raise ModelError(f"{path}: corrupt GGUF header ({exc.args[0]})") from None

    data_start = -(-p.pos // alignment) * alignment
    expected = data_start + data_end if n_tensors else p.pos
    if expected > size:
        raise ModelError(
            f"{path}: truncated GGUF file: tensor data needs {expected} bytes "
            f"but the file has {size} bytes (incomplete download?)"
        )
    arch = _opt_str(meta, "general.architecture")
    if not arch:
        raise ModelError(f"{path}: corrupt GGUF header (no general.architecture)")
    return GGUFInfo(
        path=str(path),
        size_bytes=size,
        gguf_version=version,
        architecture=arch,
        name=_opt_str(meta, "general.name"),
        file_type=_file_type_name(meta, types),
        parameter_count=param_count,
        context_length=_opt_int(meta, f"{arch}.context_length"),
        block_count=_opt_int(meta, f"{arch}.block_count"),
        embedding_length=_opt_int(meta, f"{arch}.embedding_length"),
        head_count=_opt_int(meta, f"{arch}.attention.head_count"),
        head_count_kv=_opt_int(meta, f"{arch}.attention.head_count_kv"),
        chat_template=_opt_str(meta, "tokenizer.chat_template"),
        tokenizer_model=_opt_str(meta, "tokenizer.ggml.model"),
        split_count=_opt_int(meta, "split.count"),
        vocab_size=_vocab_size(meta, arch),
    )


def _vocab_size(meta: dict[str, Any], arch: str) -> int | None:
    tokens = meta.get("tokenizer.ggml.tokens")
    if isinstance(tokens, tuple) and tokens[0] == "array":
        return int(tokens[2])
    return _opt_int(meta, f"{arch}.vocab_size")


def chat_template_family(template: str | None) -> str | None:
    """Guess the prompt format a Jinja chat template produces (cheap substring tests)."""
    if not template or not template.strip():
        return None
    if "<|start_header_id|>" in template:
        return "llama3"
    if "<|im_start|>" in template:
        return "chatml"
    if "<start_of_turn>" in template:
        return "gemma"
    if "<|user|>" in template:
        return "phi3"
    if "[INST]" in template:
        return "mistral"
    return "custom"


_CHUNK = 1 << 20


def sha256_file(path: Path, cache_dir: Path | None = None) -> str:
    """SHA-256 of a file, streamed; optionally cached by (resolved path, size, mtime_ns)."""
    path = Path(path)
    try:
        resolved = path.resolve()
        st = resolved.stat()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    cache_file = Path(cache_dir) / "sha256.json" if cache_dir is not None else None
    cache: dict[str, Any] = {}
    if cache_file is not None:
        try:
            loaded = json.loads(cache_file.read_text(encoding="utf-8"))
            cache = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            cache = {}  # missing or corrupt cache: recompute
        hit = cache.get(str(resolved))
        if (
            isinstance(hit, dict)
            and hit.get("size") == st.st_size
            and hit.get("mtime_ns") == st.st_mtime_ns
            and isinstance(hit.get("sha256"), str)
        ):
            return hit["sha256"]
    h = hashlib.sha256()
    try:
        with open(resolved, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    digest = h.hexdigest()
    if cache_file is not None:
        cache[str(resolved)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".sha256.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(cache, out, indent=1, sort_keys=True)
                os.replace(tmp, cache_file)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            pass  # the cache is best effort; the digest is still right
    return digest
