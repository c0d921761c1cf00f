"""Reading JSON-lines input line by line so that every line is accounted for.

A line that is not valid UTF-8, not valid JSON, or not a JSON object does not stop the read and
is not dropped: it becomes a `SourceRecord` with `row=None`, the error, and its raw bytes
(base64), so validation can quarantine it with its reason and its file and line.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SourceRecord:
    """One input row with where it came from; `row` is None when the line was unreadable."""

    file: str
    line: int
    row: dict[str, Any] | None
    error: str | None = None
    raw_b64: str | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def parse_line(raw: bytes, file: str, lineno: int, *, is_last: bool = False) -> SourceRecord:
    """Parse one JSONL line (without its newline) into a SourceRecord, never raising."""

    def unreadable(error: str) -> SourceRecord:
        return SourceRecord(file, lineno, None, error, base64.b64encode(raw).decode("ascii"))

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return unreadable(f"not valid UTF-8 (byte {err.start}: {raw[err.start:err.start + 1]!r})")
    if lineno == 1 and text.startswith(BOM):
        text = text[len(BOM):]  # a UTF-8 byte-order mark is not part of the first row
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        hint = " (truncated: the file ends inside this line)" if is_last else ""
        return unreadable(f"not valid JSON: {err.msg} at column {err.colno}{hint}")
    except RecursionError:
        return unreadable("not valid JSON: nested too deeply")
    except ValueError as err:  # an integer longer than Python converts (4,300 digits)
        return unreadable(f"a number cannot be read: {str(err).split(';')[0]}")
    if not isinstance(value, dict):
        return unreadable(f"not a JSON object (got {type(value).__name__})")
    problem = row_problem(value)
    if problem:
        return unreadable(problem)
    return SourceRecord(file, lineno, value)


BOM = "\ufeff"
MAX_DEPTH = 64
"""Deeper nesting than any instance field needs; past it a row is refused, not recursed into."""


def row_problem(value: Any) -> str:
    """Why a parsed row cannot be kept ('' when it can): nesting deeper than `MAX_DEPTH`.
    Iterative, so a hostile row cannot exhaust the stack. (A lone surrogate, a `\\ud800`
    escape, is kept: the snapshot stores it escaped and validation's `*_utf8` checks quarantine
    the row naming the field.)"""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return ""


def dumps_line(row: Any) -> str:
    """One JSON line: UTF-8 text as it is, or, when a string holds a lone surrogate (not
    storable as UTF-8), the whole line ASCII-escaped: still the same JSON value."""
    text = json.dumps(row, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(row, ensure_ascii=True)
    return text


def read_jsonl_records(path: str | Path, label: str | None = None) -> Iterator[SourceRecord]:
    """Yield one SourceRecord per non-blank line of a JSONL file (1-based line numbers).

    Lines are split on b"\\n" only, in binary, so that invalid bytes in one line cannot affect
    the decoding of another. `label` is the file name recorded (default: the path).
    """
    path = Path(path)
    file = label or str(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    ends_with_newline = data.endswith(b"\n")
    if ends_with_newline:
        lines.pop()  # the empty string after the final newline is not a line
    for index, raw in enumerate(lines):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip():
            continue
        is_last = index == len(lines) - 1 and not ends_with_newline
        yield parse_line(raw, file, index + 1, is_last=is_last)
