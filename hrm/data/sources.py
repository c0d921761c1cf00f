"""Turn a source spec into a `datasets` dataset of uniform "envelope" rows.

Sources: `hf:OWNER/NAME` (the Hugging Face hub), a local `.jsonl`, `.json` or `.parquet` file,
or a directory of them. Whatever the source, the result has the same five columns
(`ENVELOPE_FEATURES`): where the row came from (`file`, `line`), the row itself as JSON text
(`record`), or, for an unreadable line, `error` and the raw bytes (`raw_b64`). Rows stay JSON
text because real inputs mix types across rows (a malformed `FAIL_TO_PASS` string next to lists,
two schemas in one file) that a typed Arrow column cannot hold; hub and local data then share
every later step (filter, limit, normalise, write) in `hrm.data.pull`.

For `.json` arrays and `.parquet` files, `line` is the 1-based row number.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

from hrm.data.instance import CORE_FIELDS
from hrm.data.records import SourceRecord, read_jsonl_records
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
        "record": None if rec.row is None else json.dumps(rec.row, ensure_ascii=False),
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

    return Dataset.from_list([_envelope(r) for r in records], features=envelope_features())


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


def _json_array_records(path: Path) -> list[SourceRecord]:
    """A `.json` file holding one array of objects; a broken file is one unreadable record."""
    raw = path.read_bytes()
    try:
        items = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        error = f"not valid UTF-8 (byte {err.start})"
        return [SourceRecord(str(path), 1, None, error, base64.b64encode(raw).decode("ascii"))]
    except json.JSONDecodeError as err:
        error = f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        return [SourceRecord(str(path), err.lineno, None, error, base64.b64encode(raw).decode())]
    out = []
    for index, item in enumerate(items, start=1):
        if isinstance(item, dict):
            out.append(SourceRecord(str(path), index, item))
        else:
            text = json.dumps(item).encode()
            error = f"array element {index} is not a JSON object (got {type(item).__name__})"
            out.append(SourceRecord(str(path), index, None, error, base64.b64encode(text).decode()))
    return out


def load_file(path: Path):
    """Envelope dataset of one local file."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        from datasets import Dataset

        try:
            ds = Dataset.from_parquet(str(path), keep_in_memory=True)
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
