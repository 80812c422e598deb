"""Seed formats: Alpaca, ShareGPT, messages, prompt/question, txt, JSON arrays, chunking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from seed_helpers import scan, seeds_of, write_jsonl

from gra_local.core.seeds import formats as seed_formats
from gra_local.core.seeds.scan import (
    Seed,
    SkippedRecord,
    iter_seeds,
)

# --- formats ---------------------------------------------------------------------------


def test_alpaca_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "alpaca.jsonl",
        [
            {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
            {"instruction": "  Say hi.  ", "input": "", "output": "Hi!"},
            {"instruction": "No answer here."},
        ],
    )
    seeds = seeds_of(path)
    assert [s.line for s in seeds] == [1, 2, 3]
    assert seeds[0].instruction == "Add the numbers.\n\n2 and 3"
    assert seeds[0].response == "5"
    assert seeds[1].instruction == "Say hi." and seeds[1].response == "Hi!"
    assert seeds[2].response is None
    result = scan(path)
    assert (result.format, result.usable, result.skipped) == ("jsonl", 3, 0)


def test_sharegpt(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "sharegpt.jsonl",
        [
            {
                "conversations": [
                    {"from": "system", "value": "Be brief."},
                    {"from": "human", "value": "What is 2+2?"},
                    {"from": "gpt", "value": "4"},
                    {"from": "human", "value": "And 3+3?"},
                    {"from": "gpt", "value": "6"},
                ]
            },
            {"conversations": [{"from": "user", "value": "Only a question"}]},
            {"conversations": [{"from": "gpt", "value": "no human turn"}]},
        ],
    )
    items = list(iter_seeds(path))
    assert isinstance(items[0], Seed)
    assert (items[0].instruction, items[0].response) == ("What is 2+2?", "4")
    assert isinstance(items[1], Seed) and items[1].response is None
    assert isinstance(items[2], SkippedRecord) and items[2].line == 3
    assert "conversations" in items[2].reason


def test_openai_messages(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "messages.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "You are helpful."},
                    {"role": "user", "content": "Name a colour."},
                    {"role": "assistant", "content": "Blue."},
                ]
            },
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Describe rain."}]},
                    {"role": "assistant", "content": "Water falling from clouds."},
                ]
            },
        ],
    )
    seeds = seeds_of(path)
    assert [(s.instruction, s.response) for s in seeds] == [
        ("Name a colour.", "Blue."),
        ("Describe rain.", "Water falling from clouds."),
    ]


def test_prompt_question_query_styles(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"prompt": "Write a haiku.", "completion": "Leaves fall..."},
            {"question": "Capital of France?", "answer": "Paris."},
            {"query": "Define entropy.", "response": "A measure of disorder."},
            {"prompt": "Pick one.", "chosen": "This one.", "rejected": "That one."},
            {"prompt": "DPO style", "chosen": [{"role": "user", "content": "DPO style"},
                                               {"role": "assistant", "content": "Chosen answer."}]},
            {"question": "Unanswered?", "extra": {"ignored": True}},
        ],
    )
    seeds = seeds_of(path)
    assert [(s.instruction, s.response) for s in seeds] == [
        ("Write a haiku.", "Leaves fall..."),
        ("Capital of France?", "Paris."),
        ("Define entropy.", "A measure of disorder."),
        ("Pick one.", "This one."),
        ("DPO style", "Chosen answer."),
        ("Unanswered?", None),
    ]


def test_txt_one_instruction_per_line(tmp_path: Path) -> None:
    path = tmp_path / "seeds.txt"
    path.write_text("Write a poem.\n\n   \n  Explain gravity.  \r\n{not json}\n", encoding="utf-8")
    seeds = seeds_of(path)
    assert [(s.line, s.instruction) for s in seeds] == [
        (1, "Write a poem."),
        (4, "Explain gravity."),
        (5, "{not json}"),
    ]
    assert scan(path).format == "txt"


def test_unknown_extension_detected_by_content(tmp_path: Path) -> None:
    txt = tmp_path / "seeds.dat"
    txt.write_text("Plain instruction\n", encoding="utf-8")
    assert scan(txt).format == "txt"
    jsonl = write_jsonl(tmp_path / "seeds.data", [{"prompt": "a"}, {"prompt": "b"}])
    assert scan(jsonl).format == "jsonl"
    array = tmp_path / "seeds"
    array.write_text('[{"prompt": "a"}]', encoding="utf-8")
    assert scan(array).format == "json"


def test_json_array_multiline_records_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "seeds.json"
    path.write_text(
        "[\n"
        '  {"instruction": "First", "output": "one"},\n'  # line 2
        "  {\n"  # line 3
        '    "instruction": "Second",\n'
        '    "output": "two"\n'
        "  },\n"
        "  42,\n"  # line 7
        '  {"prompt": "Third"}, {"question": "Fourth"}\n'  # line 8
        "]\n",
        encoding="utf-8",
    )
    items = list(iter_seeds(path))
    assert [i.line for i in items] == [2, 3, 7, 8, 8]
    assert [i.index for i in items if isinstance(i, Seed)] == [0, 1, 3, 4]
    assert isinstance(items[1], Seed) and items[1].instruction == "Second"
    assert isinstance(items[2], SkippedRecord) and "not a JSON object" in items[2].reason
    result = scan(path)
    assert (result.format, result.usable, result.skipped) == ("json", 4, 1)


def test_json_pretty_printed_objects(tmp_path: Path) -> None:
    path = tmp_path / "seeds.json"
    path.write_text(
        '{\n  "instruction": "A"\n}\n{\n  "instruction": "B"\n}\n', encoding="utf-8"
    )
    assert [(s.line, s.instruction) for s in seeds_of(path)] == [(1, "A"), (4, "B")]
    minified = tmp_path / "minified.json"
    minified.write_text(json.dumps([{"prompt": f"p{i}"} for i in range(5)]), encoding="utf-8")
    seeds = scan(minified, keep=3).sample
    assert {s.line for s in seeds} == {1} and len({s.index for s in seeds}) == 3
    single = tmp_path / "one.json"
    single.write_text('{"prompt": "only one"}', encoding="utf-8")
    assert scan(single).format == "jsonl" and seeds_of(single)[0].instruction == "only one"


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64])
def test_json_array_across_small_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_size: int
) -> None:
    monkeypatch.setattr(seed_formats, "CHUNK_SIZE", chunk_size)
    records = [
        {"instruction": f"Übersetze Nummer {i} – «ça va» 🙂", "output": "x" * i, "n": 12345678 + i}
        for i in range(6)
    ]
    path = tmp_path / "seeds.json"
    path.write_bytes(
        b"\xef\xbb\xbf[\n"
        + ",\n".join(json.dumps(r, ensure_ascii=False, indent=1) for r in records).encode()
        + b"\n]\n"
    )
    items = list(iter_seeds(path))
    assert [s.instruction for s in items] == [r["instruction"] for r in records]
    lines_per_record = json.dumps(records[0], indent=1).count("\n") + 1
    assert [s.line for s in items] == [2 + i * lines_per_record for i in range(6)]
