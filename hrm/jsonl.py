"""Reading JSON Lines input: one object per line, blank lines skipped, and a line that is not
JSON an `InputError` naming the file and line (never a traceback, never a silently dropped row)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hrm.errors import InputError


def iter_jsonl(path: str | Path, *, missing: str = "file not found") -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) of each non-blank line of `path`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(missing, path=str(path))
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"not valid JSON: {err}", path=str(path), line=lineno) from None
