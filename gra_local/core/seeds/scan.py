"""Seed loading: stream a seed file (JSONL, JSON array, plain text) into :class:`Seed` records.

Recognised record shapes: Alpaca (``instruction``/``input``/``output``), ShareGPT
(``conversations``), OpenAI messages (``messages``) and any record with an
instruction-like field (``prompt``, ``question``, ``query``). Byte-level reading and
format detection live in :mod:`gra_local.core.seeds.formats`.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from gra_local.core.errors import SeedError
from gra_local.core.records import DOMAINS
from gra_local.core.seeds.formats import detect_format, iter_records, open_binary

MAX_SKIPPED_EXAMPLES = 20

_INSTRUCTION_KEYS = ("instruction", "conversations", "messages", "prompt", "question", "query")
_DIALOGUE_KEYS = frozenset({"conversations", "messages"})
_RESPONSE_KEYS = ("output", "response", "answer", "completion", "chosen")
_USER_ROLES = frozenset({"human", "user"})
_ASSISTANT_ROLES = frozenset({"gpt", "assistant", "chatgpt", "bard", "bing", "model"})
_NO_INSTRUCTION = "no instruction-like field (instruction, prompt, question, query, conversations, messages)"
_DOMAIN_SEPARATORS = re.compile(r"[\s\-]+")
_JSON_TYPE_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


class Seed(BaseModel):
    """One usable seed example."""

    line: int  # 1-based line of the record (where it starts, for a JSON array)
    # 0-based ordinal of the record in the file, skipped records included; unique where
    # `line` is not (a one-line JSON array puts every record on line 1)
    index: int = 0
    instruction: str  # an Alpaca `input` is appended after a blank line
    response: str | None = None
    domain: str | None = None  # one of DOMAINS, only when the record names one
    keywords: list[str] | None = None  # only when the record has exactly 3 string keywords
    summary: str | None = None


class SkippedRecord(BaseModel):
    """A record that holds no usable instruction."""

    line: int
    reason: str


class SeedScan(BaseModel):
    """What one pass over a seed file found."""

    path: str
    format: str  # "jsonl", "json" or "txt"
    usable: int
    skipped: int
    skipped_examples: list[SkippedRecord]  # the first MAX_SKIPPED_EXAMPLES only
    sample: list[Seed]  # a uniform reservoir sample of usable seeds, in file order


def iter_seeds(path: Path) -> Iterator[Seed | SkippedRecord]:
    """Stream the records of a seed file, one :class:`Seed` or :class:`SkippedRecord` each.

    Raises SeedError when the file is missing, unreadable, empty, not UTF-8, or holds
    malformed JSON; the message names the file and the line.
    """
    path = Path(path)
    yield from _iter_file(path, detect_format(path))


def scan_seeds(path: Path, keep: int, rng: random.Random) -> SeedScan:
    """Read a whole seed file once: count usable and skipped records and keep a uniform
    sample (algorithm R with ``rng``) of at most ``keep`` usable seeds, in file order.

    Raises SeedError as :func:`iter_seeds` does, and when no record is usable.
    """
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    path = Path(path)
    fmt = detect_format(path)
    usable = skipped = 0
    skipped_examples: list[SkippedRecord] = []
    reservoir: list[tuple[int, Seed]] = []
    for item in _iter_file(path, fmt):
        if isinstance(item, SkippedRecord):
            skipped += 1
            if len(skipped_examples) < MAX_SKIPPED_EXAMPLES:
                skipped_examples.append(item)
            continue
        if usable < keep:
            reservoir.append((usable, item))
        elif keep:
            slot = rng.randrange(usable + 1)
            if slot < keep:
                reservoir[slot] = (usable, item)
        usable += 1
    if usable == 0:
        if skipped == 0:
            raise SeedError(f"{path}: no seed records found")
        reasons = "; ".join(f"line {s.line}: {s.reason}" for s in skipped_examples[:3])
        raise SeedError(
            f"{path}: no usable seed records ({skipped} skipped; first reasons: {reasons})"
        )
    reservoir.sort(key=lambda pair: pair[0])
    return SeedScan(
        path=str(path),
        format=fmt,
        usable=usable,
        skipped=skipped,
        skipped_examples=skipped_examples,
        sample=[seed for _, seed in reservoir],
    )


def file_fingerprint(path: Path) -> str:
    """sha256 hex digest of the file's bytes, read in 1 MiB chunks."""
    path = Path(path)
    digest = hashlib.sha256()
    with open_binary(path) as f:
        try:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        except OSError as exc:
            raise SeedError(f"{path}: read error ({exc.strerror or exc})") from None
    return digest.hexdigest()


def record_to_seed(record: object, line: int, index: int = 0) -> Seed | SkippedRecord:
    """Turn one decoded record into a Seed, or say why it cannot be one."""
    if not isinstance(record, dict):
        kind = "null" if record is None else _JSON_TYPE_NAMES.get(type(record), type(record).__name__)
        return SkippedRecord(line=line, reason=f"not a JSON object (got {kind})")
    instruction: str | None = None
    response: str | None = None
    problem: str | None = None
    for key in _INSTRUCTION_KEYS:
        if key not in record:
            continue
        if key in _DIALOGUE_KEYS:
            instruction, response = _dialogue(record[key])
            if instruction:
                break
            problem = problem or f"`{key}` has no non-empty human/user turn"
            continue
        instruction = _text(record[key])
        if instruction:
            extra = _text(record.get("input")) if key == "instruction" else None
            if extra:
                instruction = f"{instruction}\n\n{extra}"
            response = _response(record)
            break
        problem = problem or f"`{key}` is empty or not a string"
    if not instruction:
        return SkippedRecord(line=line, reason=problem or _NO_INSTRUCTION)
    return Seed(
        line=line,
        index=index,
        instruction=instruction,
        response=response,
        domain=_domain(record),
        keywords=_keywords(record.get("keywords")),
        summary=_text(record.get("summary")),
    )


def _iter_file(path: Path, fmt: str) -> Iterator[Seed | SkippedRecord]:
    for index, (line, record) in enumerate(iter_records(path, fmt)):
        yield record_to_seed(record, line, index)


def _text(value: object) -> str | None:
    """A non-empty stripped string, or the text parts of an OpenAI content list; else None."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):
        parts = [
            part["text"]
            for part in value
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        ]
        return "\n".join(parts).strip() or None
    return None


def _turn(turn: object) -> tuple[str | None, str | None]:
    """(role, text) of a ShareGPT turn ({from, value}) or an OpenAI message ({role, content})."""
    if not isinstance(turn, dict):
        return None, None
    role = turn.get("from", turn.get("role"))
    content = turn.get("value", turn.get("content"))
    return (role.strip().lower() if isinstance(role, str) else None), _text(content)


def _dialogue(turns: object) -> tuple[str | None, str | None]:
    """The first non-empty user turn, and the assistant turn that answers it (if any)."""
    if not isinstance(turns, list):
        return None, None
    instruction: str | None = None
    for turn in turns:
        role, content = _turn(turn)
        if instruction is None:
            if role in _USER_ROLES and content:
                instruction = content
        elif role in _ASSISTANT_ROLES:
            return instruction, content
        elif role in _USER_ROLES:
            break
    return instruction, None


def _response(record: dict[str, object]) -> str | None:
    for key in _RESPONSE_KEYS:
        value = record.get(key)
        text = _text(value)
        if text:
            return text
        if key == "chosen" and isinstance(value, list):  # DPO: chosen is a message list
            for role, content in map(_turn, reversed(value)):
                if role in _ASSISTANT_ROLES and content:
                    return content
    return None


def _domain(record: dict[str, object]) -> str | None:
    for key in ("domain", "category"):
        value = record.get(key)
        if isinstance(value, str):
            name = _DOMAIN_SEPARATORS.sub("_", value.strip().lower())
            if name in DOMAINS:
                return name
    return None


def _keywords(value: object) -> list[str] | None:
    if not isinstance(value, list) or len(value) != 3:
        return None
    words = [w.strip() for w in value if isinstance(w, str)]
    return words if len(words) == 3 and all(words) else None
