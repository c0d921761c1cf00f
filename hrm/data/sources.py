"""Turn a source spec into a `datasets` dataset of uniform "envelope" rows.

Sources: `hf:OWNER/NAME` (the Hugging Face hub), a local `.jsonl`, `.json` or `.parquet` file,
or a directory of them. Whatever the source, the result has the same five columns
(`ENVELOPE_FEATURES`): where the row came from (`file`, `line`), the row itself as JSON text
(`record`), or, for an unreadable line, `error` and the raw bytes (`raw_b64`). Rows stay JSON
text because real inputs mix types across rows (a malformed `FAIL_TO_PASS` string next to lists,
two schemas in one file) that a typed Arrow column cannot hold; hub and local data then share
every later step (filter, limit, normalise, write) in `hrm.data.pull`.

For `.json` arrays and `.parquet` files, `line` is the 1-based row number (element number). A
`.json` array is read element by element, so one broken element costs that element only.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from hrm.data.instance import CORE_FIELDS
from hrm.data.records import SourceRecord, dumps_line, read_jsonl_records
from hrm.errors import InputError

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
HUB_PREFIX = "hf:"
ENVELOPE_COLUMNS = ("file", "line", "record", "error", "raw_b64")


def envelope_features():  # -> datasets.Features (datasets is imported lazily: it is slow)
    from datasets import Features, Value

    return Features(
        {
            "file": Value("string"),
            "line": Value("int64"),
            "record": Value("string"),
            "error": Value("string"),
            "raw_b64": Value("string"),
        }
    )


def _json_default(value: Any) -> Any:
    """Values Arrow hands back that JSON cannot hold as they are."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"cannot store a {type(value).__name__} value as JSON")


def _envelope(rec: SourceRecord) -> dict[str, Any]:
    return {
        "file": rec.file,
        "line": rec.line,
        "record": None if rec.row is None else dumps_line(rec.row),
        "error": rec.error,
        "raw_b64": rec.raw_b64,
    }


def _row_to_envelope(file: str):
    def convert(row: dict[str, Any], index: int) -> dict[str, Any]:
        # Columnar sources pad fields a row never had with null (a 7-field row next to 9-field
        # ones gets `created_at: null`); such nulls are not data, so they are not kept.
        row = {k: v for k, v in row.items() if v is not None or k in CORE_FIELDS}
        record = json.dumps(row, ensure_ascii=False, default=_json_default)
        return {"file": file, "line": index + 1, "record": record, "error": None, "raw_b64": None}

    return convert


def _from_records(records: list[SourceRecord]):
    from datasets import Dataset

    rows = [_envelope(r) for r in records]
    # Column-wise, so that a file with no rows (empty, or blank lines only) is an empty dataset
    # with the envelope's columns, which concatenates with the others.
    return Dataset.from_dict({c: [r[c] for r in rows] for c in ENVELOPE_COLUMNS},
                             features=envelope_features())


def _wrap_rows(ds, file: str):
    """Map a dataset of raw rows (hub or parquet) to envelope rows."""
    columns = list(ds.column_names or [])
    mapped = ds.map(
        _row_to_envelope(file),
        with_indices=True,
        remove_columns=columns,
        features=envelope_features(),
        **({"keep_in_memory": True} if hasattr(ds, "cache_files") else {}),
    )
    return mapped.select_columns(list(ENVELOPE_COLUMNS))


_JSON_WS = " \t\n\r"
_UNDECODABLE = re.compile("[\udc80-\udcff]")
"""Bytes that are not UTF-8, as `surrogateescape` decoding leaves them."""


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _JSON_WS:
        i += 1
    return i


def _element_end(text: str, i: int) -> int:
    """Index of the `,` or `]` ending the (possibly malformed) array element that starts at `i`,
    matching brackets outside strings; `len(text)` when the file ends first. A closing bracket
    that does not match closes the brackets left open inside it (`{"b": [1}` ends at `}`); one
    that matches nothing open is the array's own `]`."""
    stack: list[str] = []
    in_string = escaped = False
    for j in range(i, len(text)):
        c = text[j]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            stack.append("]" if c == "[" else "}")
        elif c in "]}":
            if c not in stack:
                return j
            while stack.pop() != c:
                pass
        elif c == "," and not stack:
            return j
    return len(text)


def _line_col(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    return f"line {line} column {pos - (text.rfind(chr(10), 0, pos) + 1) + 1}"


def _json_array_records(path: Path) -> list[SourceRecord]:
    """A `.json` file holding one array of objects, read element by element.

    As with JSONL lines, one bad element (not valid JSON, not valid UTF-8, not an object) becomes
    one unreadable record named by its element number (`line`) with the text line and column in
    its error; the elements around it are kept. A file that ends inside the array, or has text
    after it, gets one more unreadable record saying so.
    """
    raw = path.read_bytes()
    file = str(path)
    text = raw.decode("utf-8", "surrogateescape")
    undecodable = _UNDECODABLE.search(text) is not None  # the slow per-element scan only then
    decoder = json.JSONDecoder()
    out: list[SourceRecord] = []

    def unreadable(index: int, error: str, span: str) -> None:
        data = span.encode("utf-8", "surrogateescape")
        out.append(SourceRecord(file, index, None, error, base64.b64encode(data).decode("ascii")))

    i = _skip_ws(text, 1 if text.startswith("\ufeff") else 0)
    if not text.startswith("[", i):
        unreadable(1, "not valid JSON: expected an array", text)
        return out
    i = _skip_ws(text, i + 1)
    index = 0
    closed = text.startswith("]", i)
    if closed:
        i += 1
    while not closed:
        if i >= len(text):
            unreadable(index + 1, f"the file ends inside the array, after element {index} "
                       "(truncated?)", "")
            break
        index += 1
        truncated = False
        start = i
        bad = _UNDECODABLE.search(text, start, _element_end(text, start)) if undecodable else None
        try:
            if bad:
                raise UnicodeError
            value, end = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError, UnicodeError) as err:
            end = _element_end(text, start)
            where = _line_col(text, start)
            if isinstance(err, UnicodeError):
                assert bad is not None
                error = f"not valid UTF-8 (byte {len(text[:bad.start()].encode('utf-8', 'surrogateescape'))})"
            elif isinstance(err, RecursionError):
                error = "not valid JSON: nested too deeply"
            else:
                error = f"not valid JSON: {err.msg} at {_line_col(text, err.pos)}"
            if end == len(text):
                truncated = True
                error += " (truncated: the file ends inside this element)"
            unreadable(index, f"array element {index} ({where}): {error}", text[start:end])
        else:
            if isinstance(value, dict):
                out.append(SourceRecord(file, index, value))
            else:
                unreadable(index, f"array element {index} is not a JSON object "
                           f"(got {type(value).__name__})", text[start:end])
            after = _skip_ws(text, end)
            if after < len(text) and text[after] not in ",]":
                # a missing comma: say so, and read on from there
                unreadable(index, f"expected ',' or ']' after array element {index} at "
                           f"{_line_col(text, after)}", "")
                i = after
                continue
            end = after
        if end >= len(text):  # no closing ']': the file was cut
            if not truncated:  # else the element's own error says so
                unreadable(index + 1, f"the file ends inside the array, after element {index} "
                           "(truncated?)", "")
            i = end
            break
        closed = text[end] == "]"
        i = _skip_ws(text, end + 1)
    trailing = _skip_ws(text, i)
    if closed and trailing < len(text):
        unreadable(index + 1, f"text after the array's closing ']' at {_line_col(text, trailing)}",
                   text[trailing:])
    return out


def load_file(path: Path):
    """Envelope dataset of one local file."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq
        from datasets import Dataset

        try:
            # Read with pyarrow into memory: `Dataset.from_parquet` prepares an Arrow copy under
            # ~/.cache/huggingface/datasets even with keep_in_memory (a write outside the project).
            ds = Dataset(pq.read_table(str(path)))
        except Exception as err:  # pyarrow raises several types for a corrupt file
            raise InputError(f"cannot read parquet: {err}", path=str(path)) from None
        return _wrap_rows(ds, str(path))
    if suffix == ".json":
        head = path.read_bytes()[:4096].lstrip()
        if head.startswith(b"["):
            return _from_records(_json_array_records(path))
    if suffix in (".json", ".jsonl"):
        return _from_records(list(read_jsonl_records(path)))
    raise InputError(f"unsupported file type {suffix!r} (expected one of {LOCAL_SUFFIXES})", path=str(path))


def local_files(path: Path) -> list[Path]:
    """The input files of a local source: the file itself, or a directory's files, sorted."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_SUFFIXES)
        if not files:
            raise InputError(f"directory holds no {'/'.join(LOCAL_SUFFIXES)} files", path=str(path))
        return files
    raise InputError("source not found", path=str(path))


def load_source(source: str, split: str = "train"):
    """Envelope dataset (`datasets.Dataset`, or `IterableDataset` for the hub) of a source."""
    if source.startswith(HUB_PREFIX):
        from datasets import load_dataset

        name = source[len(HUB_PREFIX) :]
        if not name or "/" not in name:
            raise InputError(f"hub source must be hf:OWNER/NAME, got {source!r}")
        # Streaming: a `limit` then reads only what it keeps, and nothing is cached on disk.
        ds = load_dataset(name, split=split, streaming=True)
        return _wrap_rows(ds, f"{source}[{split}]")
    if source.startswith("synth:"):
        raise InputError(f"{source!r} is generated, not pulled: use `hrm data synth` or materialise")
    from datasets import concatenate_datasets

    parts = [load_file(p) for p in local_files(Path(source))]
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)
