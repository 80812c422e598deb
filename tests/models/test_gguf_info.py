"""GGUF header reading without loading weights: fields, every error case, sha256 cache."""

from __future__ import annotations

import builtins
import json
import os
import struct
from pathlib import Path

import pytest
from ggufs import (
    CHATML_TEMPLATE,
    TOKENS,
    write_corrupt_header_gguf,
    write_gguf_with_version,
    write_not_gguf,
    write_tiny_gguf,
    write_truncated_gguf,
)

from gra_local.core.errors import ModelError
from gra_local.models.gguf_info import (
    GGUFInfo,
    chat_template_family,
    read_gguf_info,
    sha256_file,
)

# parameters of the tiny model: embeddings + output (vocab x 32) + norms + one block
N_VOCAB = len(TOKENS)
TINY_PARAMS = 2 * N_VOCAB * 32 + 32 + 2 * 32 + 4 * 32 * 32 + 3 * 64 * 32


def _error(path: Path) -> str:
    with pytest.raises(ModelError) as info:
        read_gguf_info(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    assert "Traceback" not in message
    return message


@pytest.mark.parametrize("file_type", ["F32", "F16", "Q8_0", "Q4_0"])
def test_tiny_gguf_fields(tmp_path: Path, file_type: str) -> None:
    path = write_tiny_gguf(tmp_path / f"tiny-{file_type}.gguf", file_type=file_type)
    info = read_gguf_info(path)
    assert isinstance(info, GGUFInfo)
    assert info.path == str(path)
    assert info.size_bytes == path.stat().st_size
    assert info.gguf_version == 3
    assert info.architecture == "llama"
    assert info.name == "tiny-test"
    assert info.file_type == file_type
    assert info.parameter_count == TINY_PARAMS
    assert info.context_length == 2048
    assert info.block_count == 1
    assert info.embedding_length == 32
    assert info.head_count == 2
    assert info.head_count_kv == 2
    assert info.chat_template == CHATML_TEMPLATE
    assert info.tokenizer_model == "llama"
    assert info.split_count is None
    assert chat_template_family(info.chat_template) == "chatml"


def test_tiny_gguf_without_template_name_and_with_split(tmp_path: Path) -> None:
    path = write_tiny_gguf(
        tmp_path / "bare.gguf",
        chat_template=None,
        name=None,
        architecture="qwen2",
        context_length=4096,
        extra_kv={"split.count": 1},
    )
    info = read_gguf_info(path)
    assert info.chat_template is None
    assert chat_template_family(info.chat_template) is None
    assert info.name is None
    assert info.architecture == "qwen2"
    assert info.context_length == 4096  # read from the {arch}. keys
    assert info.split_count == 1


def test_file_type_falls_back_to_most_common_tensor_type(tmp_path: Path) -> None:
    # general.file_type names no known type: fall back to the tensors (Q8_0 dominates)
    path = write_tiny_gguf(tmp_path / "q8.gguf", file_type="Q8_0")
    data = bytearray(path.read_bytes())
    key = b"general.file_type"
    at = data.index(struct.pack("<Q", len(key)) + key) + 8 + len(key)
    assert struct.unpack_from("<I", data, at)[0] == 4  # uint32 value follows
    struct.pack_into("<I", data, at + 4, 999)
    path.write_bytes(bytes(data))
    assert read_gguf_info(path).file_type == "Q8_0"


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "nope.gguf")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.gguf").mkdir()
    assert "directory" in _error(tmp_path / "dir.gguf")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "locked.gguf")
    path.chmod(0)
    try:
        assert "cannot read" in _error(path)
    finally:
        path.chmod(0o644)


def test_unreadable_file_via_oserror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_tiny_gguf(tmp_path / "locked.gguf")
    real_open = builtins.open

    def deny(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    assert "cannot read model file (Permission denied)" in _error(path)


def test_not_gguf(tmp_path: Path) -> None:
    message = _error(write_not_gguf(tmp_path / "page.gguf"))
    assert "not a GGUF file (starts with b'<htm')" in message


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.gguf").write_bytes(b"")
    assert "not a GGUF file" in _error(tmp_path / "empty.gguf")


@pytest.mark.parametrize("version", [1, 4, 99])
def test_unsupported_version(tmp_path: Path, version: int) -> None:
    message = _error(write_gguf_with_version(tmp_path / "v.gguf", version))
    assert f"unsupported GGUF version {version}" in message
    assert "supported: 2, 3" in message


def test_corrupt_header(tmp_path: Path) -> None:
    assert "corrupt GGUF header" in _error(write_corrupt_header_gguf(tmp_path / "bad.gguf"))


def test_header_cut_inside_metadata(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "cut.gguf")
    os.truncate(path, 300)  # inside the key/value section
    assert "corrupt GGUF header" in _error(path)


def test_unknown_value_type(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "type.gguf")
    data = bytearray(path.read_bytes())
    key = b"general.architecture"
    at = data.index(struct.pack("<Q", len(key)) + key) + 8 + len(key)
    struct.pack_into("<I", data, at, 77)
    path.write_bytes(bytes(data))
    assert "corrupt GGUF header" in _error(path)


def test_truncated_tensor_data(tmp_path: Path) -> None:
    full = write_tiny_gguf(tmp_path / "full.gguf").stat().st_size
    path = write_truncated_gguf(tmp_path / "trunc.gguf", cut_bytes=4096)
    message = _error(path)
    assert "truncated" in message
    assert f"needs {full} bytes" in message
    assert f"has {full - 4096} bytes" in message


def test_real_model(smol_model: Path) -> None:
    path = smol_model
    info = read_gguf_info(path)
    assert info.gguf_version in (2, 3)
    assert info.size_bytes == path.stat().st_size
    assert info.parameter_count > 1_000_000
    assert info.file_type != "unknown"
    assert info.context_length and info.block_count and info.embedding_length
    if "smollm2-135m" in path.name.lower():
        assert info.architecture == "llama"
        assert info.file_type == "Q4_1"
        assert info.parameter_count == 134_515_008
        assert (info.context_length, info.block_count, info.embedding_length) == (8192, 30, 576)
        assert (info.head_count, info.head_count_kv) == (9, 3)
        assert info.tokenizer_model == "gpt2"
        assert chat_template_family(info.chat_template) == "chatml"


@pytest.mark.parametrize(
    ("template", "family"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        (CHATML_TEMPLATE, "chatml"),
        ("{{ '<|start_header_id|>' + m.role + '<|end_header_id|>' }}<|eot_id|>", "llama3"),
        ("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}", "mistral"),
        ("{{ '<start_of_turn>' + role + '\n' }}<end_of_turn>", "gemma"),
        ("{% for m in messages %}<|user|>\n{{ m.content }}<|end|>{% endfor %}", "phi3"),
        ("{% for m in messages %}### {{ m.role }}: {{ m.content }}{% endfor %}", "custom"),
    ],
)
def test_chat_template_family(template: str | None, family: str | None) -> None:
    assert chat_template_family(template) == family


def test_sha256_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "blob.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # crosses chunk boundaries
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


class _CountingOpen:
    """Counts opens of one file in binary read mode (i.e. hashing it)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target.resolve())
        self.count = 0
        self.real = builtins.open

    def __call__(self, file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if mode == "rb" and str(file) == self.target:
            self.count += 1
        return self.real(file, mode, *args, **kwargs)


def test_sha256_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    path = write_tiny_gguf(tmp_path / "m.gguf")
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    cache_dir = tmp_path / "cache"
    counter = _CountingOpen(path)
    monkeypatch.setattr(builtins, "open", counter)

    assert sha256_file(path, cache_dir) == expected
    assert counter.count == 1
    entries = json.loads((cache_dir / "sha256.json").read_text())
    assert entries[str(path.resolve())]["sha256"] == expected
    assert not [p for p in cache_dir.iterdir() if p.name != "sha256.json"]  # no temp left

    assert sha256_file(path, cache_dir) == expected  # cache hit: file not read
    assert counter.count == 1
    assert sha256_file(tmp_path / "." / "m.gguf", cache_dir) == expected  # same resolved path
    assert counter.count == 1

    # the file changes (size and mtime): hashed again
    write_tiny_gguf(path, file_type="F16")
    os.utime(path, ns=(1, 1))
    new = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha256_file(path, cache_dir) == new
    assert counter.count == 2

    # without cache_dir: always read
    assert sha256_file(path) == new
    assert counter.count == 3


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"x": "y"}', ""])
def test_sha256_corrupt_cache_is_ignored(tmp_path: Path, content: str) -> None:
    import hashlib

    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "sha256.json").write_text(content)
    assert sha256_file(path, cache_dir) == hashlib.sha256(b"hello").hexdigest()
    assert json.loads((cache_dir / "sha256.json").read_text())[str(path.resolve())]["size"] == 5


def test_sha256_stale_entry_is_not_trusted(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    st = path.stat()
    entry = {"size": st.st_size + 1, "mtime_ns": st.st_mtime_ns, "sha256": "0" * 64}
    (cache_dir / "sha256.json").write_text(json.dumps({str(path.resolve()): entry}))
    assert sha256_file(path, cache_dir) == hashlib.sha256(b"hello").hexdigest()


def test_sha256_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="nope.bin"):
        sha256_file(tmp_path / "nope.bin", tmp_path)
