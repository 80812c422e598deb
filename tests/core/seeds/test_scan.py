"""Seed loaders: skipped records, errors, fields, reservoir sampling, streaming memory."""

from __future__ import annotations

import json
import random
import tracemalloc
from importlib.resources import as_file, files
from pathlib import Path

import pytest
from seed_helpers import scan, seeds_of, write_jsonl

from gra_local.core.errors import SeedError
from gra_local.core.seeds import formats as seed_formats
from gra_local.core.seeds.scan import (
    DOMAINS,
    file_fingerprint,
    iter_seeds,
    scan_seeds,
)

# --- skipped records and errors ---------------------------------------------------------


def test_skipped_records_reported_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_text(
        '{"instruction": "ok"}\n'
        "\n"
        '{"title": "no instruction"}\n'
        '{"instruction": "   "}\n'
        '["a", "list"]\n'
        '{"prompt": 7}\n'
        '{"prompt": "fine"}\n',
        encoding="utf-8",
    )
    result = scan(path)
    assert (result.usable, result.skipped) == (2, 4)
    assert [(s.line, s.reason) for s in result.skipped_examples] == [
        (3, "no instruction-like field (instruction, prompt, question, query, conversations, messages)"),
        (4, "`instruction` is empty or not a string"),
        (5, "not a JSON object (got array)"),
        (6, "`prompt` is empty or not a string"),
    ]


def test_skipped_examples_capped_at_20(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [{"x": i} for i in range(30)] + [{"prompt": "p"}])
    result = scan(path)
    assert (result.usable, result.skipped, len(result.skipped_examples)) == (1, 30, 20)
    assert result.skipped_examples[-1].line == 20


def test_malformed_jsonl_names_line(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b"}\n\n{"prompt": "c" "x": 1}\n', encoding="utf-8")
    with pytest.raises(SeedError) as info:
        scan(path)
    message = str(info.value)
    assert message.startswith(f"{path} line 4: malformed JSON (Expecting ',' delimiter")
    assert "\n" not in message


def test_malformed_json_array_names_line(tmp_path: Path) -> None:
    path = tmp_path / "seeds.json"
    path.write_text('[\n {"prompt": "a"},\n {"prompt": "b",\n  "x" 1}\n]\n', encoding="utf-8")
    expected = r"seeds\.json line 4: malformed JSON \(Expecting ':' delimiter at column 7\)"
    with pytest.raises(SeedError, match=expected):
        list(iter_seeds(path))
    no_comma = tmp_path / "no_comma.json"
    no_comma.write_text('[\n {"prompt": "a"}\n {"prompt": "b"}\n]\n', encoding="utf-8")
    expected = r"no_comma\.json line 3: malformed JSON \(Expecting ',' delimiter at column 2\)"
    with pytest.raises(SeedError, match=expected):
        scan(no_comma)
    trailing = tmp_path / "trailing.json"
    trailing.write_text('[{"prompt": "a"}]\n\n{"prompt": "b"}\n', encoding="utf-8")
    with pytest.raises(SeedError, match=r"trailing\.json line 3: malformed JSON \(unexpected content after"):
        scan(trailing)
    unclosed = tmp_path / "unclosed.json"
    unclosed.write_text('[{"prompt": "a"},\n{"prompt": "b"}\n', encoding="utf-8")
    with pytest.raises(SeedError, match=r"unclosed\.json line 3: malformed JSON .*closing '\]'"):
        scan(unclosed)


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("seeds.jsonl", b'{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "ab'),
        ("seeds.txt", b"one\ntwo\nab"),
        ("seeds.json", b'[{"prompt": "a"},\n{"prompt": "b"},\n{"prompt": "ab'),
    ],
)
def test_non_utf8_names_line_and_offset(tmp_path: Path, name: str, prefix: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(prefix + b'\xff"}\nmore\n')
    offset = len(prefix) - prefix.rfind(b"\n") - 1
    with pytest.raises(SeedError) as info:
        scan(path)
    assert str(info.value) == (
        f"{path} line 3: not valid UTF-8 (byte 0xff at byte offset {offset} in the line)"
    )


def test_non_utf8_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seed_formats, "CHUNK_SIZE", 5)
    path = tmp_path / "seeds.json"
    path.write_bytes(b'[\n{"prompt": "caf\xc3\xa9"},\n{"prompt": "caf\xc3"}]')
    expected = r"line 3: not valid UTF-8 \(byte 0xc3 at byte offset 15 in the line\)"
    with pytest.raises(SeedError, match=expected):
        scan(path)


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n", b"\xef\xbb\xbf\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_bytes(content)
    with pytest.raises(SeedError, match=r"seeds\.jsonl is empty"):
        scan(path)
    with pytest.raises(SeedError, match="is empty"):
        list(iter_seeds(path))


def test_all_unusable(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "seeds.jsonl", [{"title": "x"}, {"prompt": ""}, 5])
    with pytest.raises(SeedError) as info:
        scan(path)
    message = str(info.value)
    assert "no usable seed records (3 skipped" in message
    assert "line 1: no instruction-like field" in message and "line 3: not a JSON object" in message
    empty_array = tmp_path / "empty.json"
    empty_array.write_text("[ ]\n", encoding="utf-8")
    with pytest.raises(SeedError, match="no seed records found"):
        scan(empty_array)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="nope.jsonl: no such file"):
        scan(tmp_path / "nope.jsonl")
    with pytest.raises(SeedError, match="no such file"):
        list(iter_seeds(tmp_path / "nope.jsonl"))
    with pytest.raises(SeedError, match="is a directory"):
        scan(tmp_path)
    with pytest.raises(SeedError, match="no such file"):
        file_fingerprint(tmp_path / "nope.jsonl")


def test_bom_is_accepted(tmp_path: Path) -> None:
    for name, body in [
        ("a.jsonl", '{"prompt": "with bom"}\n'),
        ("a.json", '[{"prompt": "with bom"}]'),
        ("a.txt", "with bom\n"),
    ]:
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + body.encode())
        assert [s.instruction for s in seeds_of(path)] == ["with bom"], name


# --- fields -----------------------------------------------------------------------------


def test_domain_keywords_summary(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "seeds.jsonl",
        [
            {"prompt": "a", "domain": " Creative Writing "},
            {"prompt": "b", "category": "creative-writing"},
            {"prompt": "c", "domain": "MATH"},
            {"prompt": "d", "category": "brainstorming"},
            {"prompt": "e", "domain": 3, "category": "QA"},
            {"prompt": "f", "keywords": ["loop", " list ", "index"], "summary": " About loops. "},
            {"prompt": "g", "keywords": ["only", "two"]},
            {"prompt": "h", "keywords": ["a", "b", 3]},
            {"prompt": "i", "keywords": "a, b, c", "summary": ""},
        ],
    )
    seeds = seeds_of(path)
    assert [s.domain for s in seeds] == [
        "creative_writing", "creative_writing", "math", None, "qa", None, None, None, None
    ]
    assert seeds[5].keywords == ["loop", "list", "index"] and seeds[5].summary == "About loops."
    assert all(s.keywords is None for s in seeds[6:])
    assert seeds[8].summary is None


# --- sampling ---------------------------------------------------------------------------


def test_reservoir_size_order_and_reproducibility(tmp_path: Path) -> None:
    path = tmp_path / "seeds.txt"
    path.write_text("".join(f"instruction {i}\n" for i in range(1000)), encoding="utf-8")
    first = scan(path, keep=50, seed=7)
    again = scan(path, keep=50, seed=7)
    other = scan(path, keep=50, seed=8)
    assert first.usable == 1000 and len(first.sample) == 50
    assert first.sample == again.sample
    assert first.sample != other.sample
    lines = [s.line for s in first.sample]
    assert lines == sorted(lines) and len(set(lines)) == 50
    assert max(lines) > 500  # not just the head of the file
    everything = scan(path, keep=5000)
    assert [s.line for s in everything.sample] == list(range(1, 1001))
    assert scan(path, keep=0).sample == []


def test_reservoir_is_roughly_uniform(tmp_path: Path) -> None:
    path = tmp_path / "seeds.txt"
    path.write_text("".join(f"i{i}\n" for i in range(10)), encoding="utf-8")
    rng = random.Random(1)
    counts = [0] * 10
    for _ in range(2000):
        for seed in scan_seeds(path, 3, rng).sample:
            counts[seed.line - 1] += 1
    assert all(450 < c < 750 for c in counts), counts  # expected 600 each


# --- bundled example, fingerprint, streaming --------------------------------------------


def test_bundled_example_seeds() -> None:
    with as_file(files("gra_local").joinpath("data/example_seeds.jsonl")) as path:
        result = scan(path, keep=100)
    assert (result.format, result.usable, result.skipped) == ("jsonl", 21, 0)
    assert {s.domain for s in result.sample} == set(DOMAINS)
    for domain in DOMAINS:
        assert sum(s.domain == domain for s in result.sample) == 3
    assert all(s.instruction and s.response for s in result.sample)


def test_file_fingerprint(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "seeds.bin"
    data = bytes(range(256)) * 9000  # > 2 MiB: several chunks
    path.write_bytes(data)
    assert file_fingerprint(path) == hashlib.sha256(data).hexdigest()


def test_json_array_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    filler = "lorem ipsum dolor sit amet " * 36  # ~1 KB per record
    with path.open("w", encoding="utf-8") as f:
        f.write("[\n")
        for i in range(30_000):
            f.write(json.dumps({"instruction": f"task {i}", "output": filler, "domain": "qa"}))
            f.write(",\n" if i < 29_999 else "\n]\n")
    size = path.stat().st_size
    assert size > 25_000_000
    tracemalloc.start()
    try:
        result = scan(path, keep=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.usable == 30_000 and len(result.sample) == 10
    assert result.sample[-1].line > 2
    assert peak < 10_000_000, f"peak {peak} bytes while scanning a {size}-byte file"
