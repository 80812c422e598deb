"""Streaming readers for seed files: detect the format, then yield ``(line, record)`` pairs.

Only bytes -> JSON values (or text lines) with 1-based line numbers live here; what a
record *means* (Alpaca, ShareGPT, messages, ...) is decided in :mod:`gra_local.core.seeds.scan`.
Nothing reads a whole file: JSONL and text are read line by line, a JSON array is read
in 1 MiB chunks and decoded value by value from a rolling buffer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

from gra_local.core.errors import SeedError

CHUNK_SIZE = 1 << 20
MAX_RECORD_CHARS = 64 << 20
_BOM = b"\xef\xbb\xbf"
_WS_BYTES = b" \t\r\n"
_JSON_SUFFIXES = frozenset({".json", ".jsonl", ".ndjson"})
_WS = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()
# A decode error this close to the end of the buffer may only mean "the record goes on
# in the next chunk" (truncated literal, number or escape); further in, it is real.
_TAIL_MARGIN = 16

Record = tuple[int, object]


def open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for reading bytes; every failure becomes a one-line SeedError."""
    if path.is_dir():
        raise SeedError(f"{path} is a directory, not a seed file")
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise SeedError(f"{path}: no such file") from None
    except PermissionError:
        raise SeedError(f"{path}: permission denied") from None
    except OSError as exc:
        raise SeedError(f"{path}: cannot open ({exc.strerror or exc})") from None


def _read_error(path: Path, exc: OSError) -> SeedError:
    return SeedError(f"{path}: read error ({exc.strerror or exc})")


def _utf8_error(path: Path, line: int, byte: int, offset: int) -> SeedError:
    return SeedError(
        f"{path} line {line}: not valid UTF-8 (byte 0x{byte:02x} at byte offset {offset} in the line)"
    )


def detect_format(path: Path) -> str:
    """Return ``"txt"``, ``"jsonl"`` or ``"json"`` (an array, or pretty-printed objects).

    Raises SeedError when the file is missing, unreadable, or empty (only whitespace).
    """
    try:
        with open_binary(path) as f:
            first = _first_significant_byte(f, path)
            suffix = path.suffix.lower()
            if suffix == ".txt":
                return "txt"
            if first == ord("["):
                return "json"
            if suffix not in _JSON_SUFFIXES and first != ord("{"):
                return "txt"
            f.seek(0)
            return "jsonl" if _first_line_is_complete(f) else "json"
    except OSError as exc:
        raise _read_error(path, exc) from None


def _first_significant_byte(f: BinaryIO, path: Path) -> int:
    start = True
    while True:
        data = f.read(max(CHUNK_SIZE, len(_BOM)))
        if not data:
            raise SeedError(f"{path} is empty")
        if start:
            data, start = data.removeprefix(_BOM), False
        data = data.lstrip(_WS_BYTES)
        if data:
            return data[0]


def _first_line_is_complete(f: BinaryIO) -> bool:
    """True when the first non-blank line is one whole JSON value (a JSONL file)."""
    for number, raw in enumerate(f, 1):
        if number == 1:
            raw = raw.removeprefix(_BOM)
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return True  # the line reader reports it with line and offset
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            try:
                json.loads(text)
            except json.JSONDecodeError:
                return False
        return True
    return True


def iter_records(path: Path, fmt: str) -> Iterator[Record]:
    """Yield ``(line, value)`` for every record of a file in format ``fmt``.

    Text lines come as ``{"instruction": line}``; JSON values come as decoded.
    Malformed JSON, non-UTF-8 bytes and read errors raise SeedError.
    """
    with open_binary(path) as f:
        try:
            if fmt == "txt":
                for line, text in _iter_lines(f, path):
                    text = text.strip()
                    if text:
                        yield line, {"instruction": text}
            elif fmt == "jsonl":
                for line, text in _iter_lines(f, path):
                    if text.strip():
                        yield line, _loads_line(text, path, line)
            else:
                yield from _JsonStream(f, path).records()
        except OSError as exc:
            raise _read_error(path, exc) from None


def _iter_lines(f: BinaryIO, path: Path) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(f, 1):
        skip = 0
        if number == 1 and raw.startswith(_BOM):
            skip = len(_BOM)
        try:
            text = raw[skip:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _utf8_error(path, number, raw[skip + exc.start], skip + exc.start) from None
        yield number, text


def _loads_line(text: str, path: Path, line: int) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:  # stdlib: accepts what orjson refuses (NaN, huge ints) and words errors well
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SeedError(f"{path} line {line}: malformed JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise SeedError(f"{path} line {line}: malformed JSON (nested too deeply)") from None


def _decode_chunks(f: BinaryIO, path: Path) -> Iterator[str]:
    """Decode a file as strict UTF-8 in chunks, keeping split multi-byte characters whole."""
    line, line_bytes = 1, 0  # line number at the chunk start, bytes of that line already read
    pending = b""
    start = True
    while True:
        data = f.read(max(CHUNK_SIZE, len(_BOM)))
        eof = not data
        if start and data.startswith(_BOM):
            data, line_bytes = data[len(_BOM):], len(_BOM)
        start = False
        if pending:
            data, pending = pending + data, b""
        if not data:
            if eof:
                return
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if eof or exc.reason != "unexpected end of data":
                nl = data.rfind(b"\n", 0, exc.start)
                offset = exc.start - nl - 1 if nl >= 0 else line_bytes + exc.start
                number = line + data.count(b"\n", 0, exc.start)
                raise _utf8_error(path, number, data[exc.start], offset) from None
            data, pending = data[: exc.start], data[exc.start:]
            text = data.decode("utf-8")
        nl = data.rfind(b"\n")
        line += data.count(b"\n")
        line_bytes = len(data) - nl - 1 if nl >= 0 else line_bytes + len(data)
        if text:
            yield text


class _JsonStream:
    """The top-level values of a JSON file, streamed from a rolling text buffer.

    Handles one array of records (``[ {...}, {...} ]``) or whitespace-separated values
    (pretty-printed objects, one after another). Line numbers are counted incrementally.
    """

    def __init__(self, f: BinaryIO, path: Path) -> None:
        self._chunks = _decode_chunks(f, path)
        self._path = path
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._mark = 0  # newlines in _buf[:_mark] are already counted in _line
        self._line = 1
        self._line_start = 0  # index in _buf where line _line starts (negative: before _buf)

    def _line_at(self, pos: int) -> int:
        count = self._buf.count("\n", self._mark, pos)
        if count:
            self._line += count
            self._line_start = self._buf.rfind("\n", self._mark, pos) + 1
        self._mark = pos
        return self._line

    def _fill(self) -> bool:
        """Drop the text before _pos and append the next chunk; False at end of file."""
        if self._eof:
            return False
        self._line_at(self._pos)
        chunk = next(self._chunks, None)
        if chunk is None:
            self._eof = True
            return False
        if len(self._buf) - self._pos > MAX_RECORD_CHARS:
            raise SeedError(
                f"{self._path} line {self._line}: a single JSON record is larger than "
                f"{MAX_RECORD_CHARS >> 20} MiB"
            )
        self._buf = self._buf[self._pos:] + chunk
        self._line_start -= self._pos
        self._mark = self._pos = 0
        return True

    def _skip(self, pattern: re.Pattern[str]) -> bool:
        """Move past ``pattern``; True when a character follows, False at end of file."""
        while True:
            match = pattern.match(self._buf, self._pos)
            assert match is not None  # the patterns match the empty string
            self._pos = match.end()
            if self._pos < len(self._buf):
                return True
            if not self._fill():
                return False

    def _malformed(self, pos: int, message: str) -> SeedError:
        line = self._line_at(pos)
        column = pos - self._line_start + 1
        return SeedError(f"{self._path} line {line}: malformed JSON ({message} at column {column})")

    def _unclosed(self) -> SeedError:
        line = self._line_at(self._pos)
        return SeedError(
            f"{self._path} line {line}: malformed JSON (end of file before the closing ']' of the array)"
        )

    def records(self) -> Iterator[Record]:
        if not self._skip(_WS):
            return
        if self._buf[self._pos] != "[":
            while self._skip(_WS):  # whitespace-separated values (pretty-printed objects)
                yield self._decode()
            return
        self._pos += 1
        while True:
            if not self._skip(_WS):
                raise self._unclosed()
            if self._buf[self._pos] == "]":  # empty array, or a trailing comma (tolerated)
                break
            yield self._decode()
            if not self._skip(_WS):
                raise self._unclosed()
            if self._buf[self._pos] == "]":
                break
            if self._buf[self._pos] != ",":
                raise self._malformed(self._pos, "Expecting ',' delimiter")
            self._pos += 1
        self._pos += 1
        if self._skip(_WS):
            raise self._malformed(self._pos, "unexpected content after the closing ']'")

    def _decode(self) -> Record:
        while True:
            start = self._pos
            try:
                value, end = _DECODER.raw_decode(self._buf, start)
            except json.JSONDecodeError as exc:
                maybe_cut = exc.pos >= len(self._buf) - _TAIL_MARGIN or exc.msg.startswith(
                    "Unterminated string"
                )
                if maybe_cut and self._fill():
                    continue
                raise self._malformed(exc.pos, exc.msg) from None
            except RecursionError:
                line = self._line_at(start)
                raise SeedError(f"{self._path} line {line}: malformed JSON (nested too deeply)") from None
            rest = len(self._buf) - end
            if (rest == 0 or (rest <= 2 and isinstance(value, (int, float)))) and self._fill():
                continue  # a number near the buffer's end ("1", "1e", "1.") may go on
            line = self._line_at(start)
            self._pos = end
            return line, value
