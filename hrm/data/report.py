"""`report.md` of validation: plain Markdown that renders offline (no images, no scripts)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hrm.data.suite import ExpectationOutcome
    from hrm.data.validation_result import Reason, SnapshotRow, ValidationResult

MAX_LISTED = 200
"""Quarantined rows listed in the report; the rest are counted (all are in quarantine.jsonl)."""


def _cell(text: object) -> str:
    """Make any value safe inside a Markdown table cell."""
    s = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")
    return s[:300] + ("..." if len(s) > 300 else "")


def render_report(
    result: ValidationResult,
    outcomes: list[ExpectationOutcome],
    quarantined: list[tuple[SnapshotRow, list[Reason]]],
    snapshot: Path,
) -> str:
    status = "PASSED" if result.passed else "FAILED"
    lines = [
        "# Data validation report",
        "",
        f"Snapshot: `{snapshot}`. Status: **{status}**.",
        "",
        f"- rows: {result.rows}",
        f"- valid: {result.valid}",
        f"- quarantined: {result.quarantined} ({result.invalid_fraction:.1%}; "
        f"allowed: {result.max_invalid_fraction:.1%})",
    ]
    if not result.passed:
        lines += ["", f"> {_cell(result.failure_message())}"]
    lines += [
        "",
        "## Expectations",
        "",
        "GX-native: the expectation checks the snapshot's field itself (`_str_<field>`: its string "
        "values). Derived: GX asserts on a column computed per row in Python (`hrm.data.checks`). "
        "Level `report`: shown, but routes no row and never fails the step.",
        "",
        "| check | expectation | column | how | level | checked | failed rows | result |",
        "|---|---|---|---|---|---:|---:|---|",
    ]
    for o in outcomes:
        level = "table" if o.table_level else ("row" if o.routes else "report")
        how = "GX-native" if o.native else "derived"
        checked = "" if o.element_count is None else o.element_count
        verdict = "pass" if o.success else ("error: " + _cell(o.error) if o.error else "FAIL")
        lines.append(
            f"| {o.check} | {o.expectation} | {o.column or ''} | {how} | {level} | {checked} | "
            f"{len(o.failed_rows)} | {verdict} |"
        )
    lines += ["", "## Quarantined rows", ""]
    if not quarantined:
        lines.append("None.")
    else:
        lines += ["| source | instance_id | reasons |", "|---|---|---|"]
        for snap, reasons in quarantined[:MAX_LISTED]:
            why = "; ".join(f"{r.check}: {r.detail or r.message}" for r in reasons)
            instance_id = (snap.row or {}).get("instance_id", "")
            lines.append(f"| {_cell(snap.source_file)}:{snap.source_line} | {_cell(instance_id)} | {_cell(why)} |")
        if len(quarantined) > MAX_LISTED:
            lines.append(f"\n... and {len(quarantined) - MAX_LISTED} more in quarantine.jsonl.")
    return "\n".join(lines) + "\n"
