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
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        hint = " (truncated: the file ends inside this line)" if is_last else ""
        return unreadable(f"not valid JSON: {err.msg} at column {err.colno}{hint}")
    except RecursionError:
        return unreadable("not valid JSON: nested too deeply")
    if not isinstance(value, dict):
        return unreadable(f"not a JSON object (got {type(value).__name__})")
    return SourceRecord(file, lineno, value)


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
