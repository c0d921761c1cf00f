"""`hrm data pull`: read instances from the hub or local files into the raw snapshot.

The snapshot (`data.snapshot`, JSONL) holds one row per input row, in input order:
the row normalised (`hrm.data.schemas.normalise`: core fields first, JSON-encoded test lists
decoded, unknown fields kept) plus `_source: {file, line}`; or, for an unreadable line,
only `_source` and `_unparsed: {error, raw_b64}`. Nothing is judged here beyond what must be
known to read the data: `hrm data validate` decides what is valid and quarantines the rest.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hrm.config import DataConfig
from hrm.data.records import dumps_line
from hrm.data.schemas import PROVENANCE_KEY, UNPARSED_KEY, is_swe_bench_row, normalise
from hrm.data.sources import load_source
from hrm.data.swebench import ConversionError, convert_row


@dataclass
class PullSummary:
    """What a pull read and wrote; printed by the CLI."""

    source: str
    snapshot: str
    rows: int = 0
    """Snapshot rows written (readable and unreadable)."""
    per_file: dict[str, int] = field(default_factory=dict)
    """Snapshot rows per input file."""
    unreadable: list[str] = field(default_factory=list)
    """`file:line: error` for every unreadable input line (kept in the snapshot, marked)."""
    swe_bench_refused: list[str] = field(default_factory=list)
    """`file:line` of SWE-bench rows kept unconverted (validation quarantines them)."""
    converted: int = 0
    """SWE-bench rows converted (with format `swe-bench`)."""
    empty_files: list[str] = field(default_factory=list)
    """Local input files that held no row at all (empty, or blank lines only)."""
    schemas: dict[str, int] = field(default_factory=dict)
    """Rows per field count, e.g. {"7 fields": 56, "9 fields": 1}."""


def _repo_of(envelope: dict[str, Any]) -> str | None:
    if envelope["record"] is None:
        return None
    row = json.loads(envelope["record"])
    repo, instance_id = row.get("repo"), row.get("instance_id")
    return " ".join(v for v in (repo, instance_id) if isinstance(v, str))


def _keep(filters: list[str]):
    def keep(envelope: dict[str, Any]) -> bool:
        key = _repo_of(envelope)
        # An unreadable line has no repo: keep it so that it is reported, never dropped here.
        return key is None or any(f in key for f in filters)

    return keep


def _select(ds, cfg: DataConfig):
    """The shared post-load steps over an envelope dataset: repo filter, then limit."""
    if cfg.repo_filter:
        ds = ds.filter(_keep(list(cfg.repo_filter)))
    if cfg.limit is not None:
        if hasattr(ds, "select") and hasattr(ds, "__len__"):
            ds = ds.select(range(min(cfg.limit, len(ds))))
        else:
            ds = ds.take(cfg.limit)
    return ds


def snapshot_row(envelope: dict[str, Any], cfg: DataConfig, summary: PullSummary) -> dict[str, Any]:
    """One envelope row to its snapshot row, recording what was noticed in `summary`."""
    where = f"{envelope['file']}:{envelope['line']}"
    source = {"file": envelope["file"], "line": envelope["line"]}
    if envelope["record"] is None:
        summary.unreadable.append(f"{where}: {envelope['error']}")
        return {
            PROVENANCE_KEY: source,
            UNPARSED_KEY: {"error": envelope["error"], "raw_b64": envelope["raw_b64"]},
        }
    row = json.loads(envelope["record"])
    if is_swe_bench_row(row):
        if cfg.format == "swe-bench":
            try:
                row = convert_row(row)
                summary.converted += 1
            except ConversionError as err:
                summary.swe_bench_refused.append(f"{where} (conversion failed: {err})")
        else:
            summary.swe_bench_refused.append(where)
    row = normalise(row)
    row.pop(PROVENANCE_KEY, None)
    row.pop(UNPARSED_KEY, None)
    return {**row, PROVENANCE_KEY: source}


def pull(source: str, out_path: str | Path, cfg: DataConfig) -> PullSummary:
    """Read `source` (see `hrm.data.sources`) and write the raw snapshot to `out_path`.

    `cfg` supplies split, limit, repo_filter and format. The snapshot is written to a
    temporary file and renamed, so a failed pull never leaves a half-written snapshot.
    """
    out_path = Path(out_path)
    ds = _select(load_source(source, cfg.split), cfg)
    summary = PullSummary(source=source, snapshot=str(out_path))
    per_file: Counter[str] = Counter()
    field_counts: Counter[str] = Counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    total = len(ds) if hasattr(ds, "__len__") else cfg.limit
    with tmp.open("w", encoding="utf-8") as fh:
        for envelope in tqdm(ds, total=total, desc=f"pull {source}", unit="row"):
            row = snapshot_row(envelope, cfg, summary)
            fh.write(dumps_line(row) + "\n")
            per_file[envelope["file"]] += 1
            if UNPARSED_KEY not in row:
                field_counts[f"{len(row) - 1} fields"] += 1
    tmp.replace(out_path)
    summary.rows = sum(per_file.values())
    summary.per_file = dict(per_file)
    summary.schemas = dict(field_counts)
    if not source.startswith(("hf:", "synth:")) and not cfg.limit and not cfg.repo_filter:
        from hrm.data.sources import local_files

        # A file with no row (empty, blank lines only) is worth a warning, not a failure.
        summary.empty_files = [str(p) for p in local_files(Path(source)) if str(p) not in per_file]
    return summary
