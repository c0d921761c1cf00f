"""What validation reads and finds: snapshot rows, quarantine reasons, the step's result.

Its own module so that the report (`hrm.data.report`) and the step (`hrm.data.validate`) share
these types without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SnapshotRow:
    """One snapshot line: the row (None if unreadable) and where it originally came from."""

    row_id: int
    snapshot_line: int
    source_file: str
    source_line: int
    row: dict[str, Any] | None
    error: str | None = None
    raw_b64: str | None = None


@dataclass
class Reason:
    check: str
    message: str
    detail: str = ""


@dataclass
class ValidationResult:
    """What validation found; `summary()` is what goes to summary.json."""

    out_dir: str
    rows: int
    valid: int
    quarantined: int
    invalid_fraction: float
    max_invalid_fraction: float
    failures: dict[str, int]
    """Rows failing each check (GX's unexpected count), every check listed (the report-only
    `id_copies` included: it counts every copy of a shared id)."""
    failed_table_checks: list[str]
    """Table-level expectations that failed (these fail the step whatever the fraction)."""
    errors: list[str] = field(default_factory=list)
    """Expectations GX could not evaluate."""
    examples: list[str] = field(default_factory=list)
    """The first quarantined rows as `file:line: check (detail)`, for the failure message (not
    in summary.json: quarantine.jsonl has every row)."""

    @property
    def passed(self) -> bool:
        return (
            self.invalid_fraction <= self.max_invalid_fraction
            and not self.failed_table_checks
            and not self.errors
        )

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("out_dir")
        data.pop("examples")
        data["passed"] = self.passed
        return data

    def failure_message(self) -> str:
        if self.rows == 0:
            return "validation failed: the snapshot holds no rows (an empty file)"
        parts = []
        if self.invalid_fraction > self.max_invalid_fraction:
            parts.append(
                f"{self.quarantined}/{self.rows} rows quarantined ({self.invalid_fraction:.1%} > "
                f"data.max_invalid_fraction {self.max_invalid_fraction:.1%})"
            )
        if self.failed_table_checks:
            parts.append(f"table-level checks failed: {', '.join(self.failed_table_checks)}")
        if self.errors:
            parts.append(f"GX could not evaluate: {'; '.join(self.errors)}")
        failing = ", ".join(f"{k} ({v} rows)" for k, v in self.failures.items() if v)
        message = f"validation failed: {'; '.join(parts)}. Failing checks: {failing or 'none'}"
        if self.examples:
            more = self.quarantined - len(self.examples)
            message += ("\nfirst quarantined rows:\n  " + "\n  ".join(self.examples)
                        + (f"\n  ... and {more} more" if more > 0 else "")
                        + f"\nevery row and reason: {self.out_dir}/quarantine.jsonl")
        return message
