"""Reading JSON input that other processes (or people) wrote: every fault an `InputError` naming
the file (and line), never a traceback and never a silently dropped row.

- `iter_jsonl`: JSON Lines, one value per line, blank lines skipped.
- `read_json_strict`: one JSON document that decides something (metrics the gate judges, a gate
  decision): UTF-8 only, a key given twice is refused (JSON parsers keep the last one, so
  `{"loss": NaN, "loss": 0.1}` would read as 0.1), and numbers too long for Python's int
  conversion or too large for a float are errors, not crashes.
"""

from __future__ import annotations

import json
import math
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


class _Refused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Refused(f"key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def _finite_or_flagged(text: str) -> float:
    """JSON numbers with a fraction or exponent: an overflow to inf is refused (`1e999`)."""
    value = float(text)
    if math.isinf(value):
        raise _Refused(f"number {text[:20]}... does not fit a float")
    return value


def read_json_strict(path: str | Path, *, missing: str = "file not found") -> Any:
    """The JSON document in `path` (NaN/Infinity literals allowed: a metric may be non-finite and
    the gate reports it as such). Raises InputError for anything else that is wrong."""
    path = Path(path)
    if not path.is_file():
        raise InputError(missing, path=str(path))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text (byte {err.start}: {err.reason})", path=str(path)) from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_finite_or_flagged)
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err.msg}", path=str(path), line=err.lineno) from None
    except _Refused as err:
        raise InputError(str(err), path=str(path)) from None
    except ValueError as err:  # an integer of more digits than int() converts
        raise InputError(f"a number in it cannot be read: {err}", path=str(path)) from None
    except RecursionError:
        raise InputError("nested too deeply", path=str(path)) from None
