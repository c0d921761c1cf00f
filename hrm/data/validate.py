"""`hrm data validate`: run the GX suite on the snapshot, route rows, write the outputs.

Outputs in `out_dir`: `instances.jsonl` (valid rows, normalised, via `write_instances`),
`quarantine.jsonl` (every invalid row with every reason and its source line), `gx_result.json`
(the GX validation result), `report.md`, and `summary.json` (DVC metrics). The step fails
(`StepFailed`, raised after all outputs are written) when the quarantined share exceeds
`data.max_invalid_fraction`, when a table-level expectation fails (including a `mostly` size
bound), or when GX could not evaluate an expectation.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hrm.config import DataConfig, Params
from hrm.data.checks import CHECKS_BY_NAME, check_row, native_detail
from hrm.data.instance import Instance, write_instances
from hrm.data.records import read_jsonl_records
from hrm.data.report import render_report
from hrm.data.schemas import PROVENANCE_KEY, UNPARSED_KEY, normalise
from hrm.data.suite import ExpectationOutcome, frame, run_suite
from hrm.data.validation_result import Reason, SnapshotRow, ValidationResult
from hrm.errors import InputError, StepFailed

OUTPUT_FILES = ("instances.jsonl", "quarantine.jsonl", "gx_result.json", "report.md", "summary.json")


def read_snapshot(path: Path) -> list[SnapshotRow]:
    """Read the snapshot line by line; pull's provenance and unparsed markers are honoured.

    A plain instances JSONL (e.g. from `hrm data synth`) is read the same way, each row's
    source being the snapshot line itself.
    """
    if not path.exists():
        raise InputError("snapshot not found (run `hrm data pull` or `hrm data materialise`)", path=str(path))
    rows: list[SnapshotRow] = []
    for rec in read_jsonl_records(path):
        source = {"file": rec.file, "line": rec.line}
        row, error, raw = rec.row, rec.error, rec.raw_b64
        if row is not None:
            if isinstance(row.get(PROVENANCE_KEY), dict):
                source = {**source, **row[PROVENANCE_KEY]}
            unparsed = row.get(UNPARSED_KEY)
            if isinstance(unparsed, dict):
                error, raw, row = unparsed.get("error") or "unreadable", unparsed.get("raw_b64"), None
            else:
                row = normalise({k: v for k, v in row.items() if k not in (PROVENANCE_KEY, UNPARSED_KEY)})
        rows.append(SnapshotRow(len(rows), rec.line, str(source["file"]), int(source["line"]), row, error, raw))
    return rows


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars in GX results
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def validate(snapshot: str | Path, out_dir: str | Path, cfg: DataConfig, *,
             tracking: Params | None = None) -> ValidationResult:
    """Validate `snapshot` into `out_dir` (see the module docstring); raises StepFailed last,
    after the outputs are written and, with `tracking`, logged (`hrm.step_tracking`)."""
    started = time.time()
    snapshot, out_dir = Path(snapshot), Path(out_dir)
    rows = read_snapshot(snapshot)
    seen: dict[str, str] = {}
    derived = [
        check_row(s.row, s.error, seen, f"{s.source_file}:{s.source_line}")
        for s in tqdm(rows, desc="checks", unit="row")
    ]
    df = frame([s.row_id for s in rows], [s.row for s in rows], [d.values for d in derived])
    gx_json, outcomes = run_suite(df, cfg)

    # GX names the failing rows of each expectation: those rows are quarantined, with a reason
    # per failed expectation (report-only expectations route nothing).
    reasons: dict[int, list[Reason]] = {}
    for outcome in outcomes:
        if outcome.table_level or not outcome.routes:
            continue
        check = CHECKS_BY_NAME[outcome.check]
        for row_id in outcome.failed_rows:
            if check.native:
                detail = native_detail(check, rows[row_id].row)
            else:
                detail = derived[row_id].details.get(check.name, "")
            reasons.setdefault(row_id, []).append(Reason(check.name, check.message, detail))

    valid = [s for s in rows if s.row_id not in reasons]
    quarantined = [s for s in rows if s.row_id in reasons]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_instances(out_dir / "instances.jsonl", [Instance.from_row(s.row) for s in valid])
    with (out_dir / "quarantine.jsonl").open("w", encoding="utf-8") as fh:
        for s in quarantined:
            # ASCII-escaped: a quarantined row may hold lone surrogates that UTF-8 cannot encode.
            fh.write(json.dumps(_quarantine_record(s, reasons[s.row_id])) + "\n")
    (out_dir / "gx_result.json").write_text(
        json.dumps(gx_json, indent=1, default=_json_default), encoding="utf-8"
    )

    result = ValidationResult(
        out_dir=str(out_dir),
        rows=len(rows),
        valid=len(valid),
        quarantined=len(quarantined),
        invalid_fraction=round(len(quarantined) / len(rows), 6) if rows else 0.0,
        max_invalid_fraction=cfg.max_invalid_fraction,
        failures={o.check: len(o.failed_rows) for o in outcomes if not o.table_level},
        failed_table_checks=[o.check for o in outcomes if _fails_table(o)],
        errors=[f"{o.check}: {o.error}" for o in outcomes if o.error],
        examples=[_example(s, reasons[s.row_id]) for s in quarantined[:EXAMPLES]],
    )
    (out_dir / "summary.json").write_text(json.dumps(result.summary(), indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(
        render_report(result, outcomes, [(s, reasons[s.row_id]) for s in quarantined], snapshot),
        encoding="utf-8",
    )
    if tracking is not None:
        from hrm.step_tracking import log_validate

        log_validate(tracking, result.summary(), out_dir, started)
    if not result.passed:
        raise StepFailed(result.failure_message())
    return result


def _fails_table(outcome: ExpectationOutcome) -> bool:
    """Table-level expectations, and `mostly` bounds, fail the step when they fail."""
    if outcome.success:
        return False
    return outcome.table_level or outcome.mostly


EXAMPLES = 5
"""Quarantined rows named in the failure message."""


def _example(s: SnapshotRow, reasons: list[Reason]) -> str:
    """`file:line: check (detail); ...` of one quarantined row."""
    why = "; ".join(f"{r.check} ({r.detail})" if r.detail else r.check for r in reasons)
    return f"{s.source_file}:{s.source_line}: {why}"


def _quarantine_record(s: SnapshotRow, reasons: list[Reason]) -> dict[str, Any]:
    return {
        "row_id": s.row_id,
        "snapshot_line": s.snapshot_line,
        "source": {"file": s.source_file, "line": s.source_line},
        "instance_id": (s.row or {}).get("instance_id"),
        "reasons": [asdict(r) for r in reasons],
        "row": s.row,
        "raw_b64": s.raw_b64,
    }
