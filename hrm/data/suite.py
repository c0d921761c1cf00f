"""The Great Expectations suite of `hrm data validate`, run on an ephemeral context.

GX does the checking wherever one of its expectations expresses a check exactly (`Check.native`:
not-null, string type, regexes for the id and the patch's first and last bytes, NUL bytes, a
non-blank problem statement and its length, id uniqueness); the rest are derived per row in
Python (`hrm.data.checks`) and asserted by GX on their derived columns. Two table-level
expectations check the table as a whole (it has rows; its columns are exactly the SWE-smith core
fields plus the derived ones). Results use `result_format=COMPLETE` with
`unexpected_index_column_names` set to the row id column, so GX itself reports which rows failed
which expectation; those are the rows quarantined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hrm.config import DataConfig
from hrm.data.checks import (
    CHECKS,
    DERIVED_COLUMNS,
    TEXT_FIELDS,
    Check,
    encodable,
    has_column,
    is_utf8_text,
    text_column,
)
from hrm.data.instance import CORE_FIELDS
from hrm.data.schemas import ALLOWED_SCHEMAS

ROW_ID = "_row_id"
SUITE_NAME = "swe-smith-instances"
FIELD_COLUMNS = tuple(
    col for name in CORE_FIELDS
    for col in ((name, has_column(name), text_column(name)) if name in TEXT_FIELDS else (name,))
)
"""The frame's columns for the core fields: each field as it came; for text fields also
`_has_<field>` and the typed `_str_<field>`."""
COLUMNS = (ROW_ID, *FIELD_COLUMNS, *DERIVED_COLUMNS)
"""Every column of a complete frame: what the `table_columns` expectation requires, exactly."""


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's outcome, reduced to what the routing and the report need."""

    check: str
    expectation: str
    column: str | None
    success: bool
    table_level: bool
    """True for expectations about the whole table (failing them fails the step)."""
    failed_rows: tuple[int, ...]
    element_count: int | None
    description: str
    error: str | None = None
    """Set when GX raised while evaluating the expectation (counts as a failure)."""
    native: bool = True
    """False when GX asserts on a column derived in Python (`hrm.data.checks`)."""
    routes: bool = True
    """False for report-only expectations (never quarantine a row, never fail the step)."""
    mostly: bool = False
    """A `mostly` bound: failing it fails the step (its failing rows are quarantined too)."""


def _arrow_safe(value: Any) -> Any:
    """`value` with lone surrogates replaced by U+FFFD, its type kept.

    GX fingerprints the DataFrame with `pandas.util.hash_pandas_object`, which goes through
    Arrow and raises on text that is not UTF-8 (the UTF-8 checks report such values).
    """
    if encodable(value):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, list):
        return [_arrow_safe(v) for v in value]
    if isinstance(value, dict):
        return {_arrow_safe(k): _arrow_safe(v) for k, v in value.items()}
    return value


def frame(row_ids: Sequence[int], rows: Sequence[dict[str, Any] | None], derived: Sequence[dict[str, Any]]):
    """The DataFrame GX validates: one row per snapshot row, columns from `COLUMNS`.

    A core field that no row has is left out (the `table_columns` expectation fails then, and
    every row fails `schema`). Field columns have object dtype, so GX checks types per value
    (never from a column dtype inferred from the values); lone surrogates in them are replaced
    (`_arrow_safe`), and the typed `_str_` columns hold only UTF-8-encodable strings.
    """
    import pandas as pd

    present = {k for row in rows if row for k in row.keys()}
    data: dict[str, Any] = {ROW_ID: pd.Series(list(row_ids), dtype="int64")}
    for name in CORE_FIELDS:
        if name not in present:
            continue
        values = [None if row is None else row.get(name) for row in rows]
        data[name] = pd.Series([_arrow_safe(v) for v in values], dtype=object)
        if name in TEXT_FIELDS:
            data[has_column(name)] = pd.Series([row is not None and name in row for row in rows], dtype=bool)
            data[text_column(name)] = pd.Series([v if is_utf8_text(v) else None for v in values], dtype=object)
    for column in DERIVED_COLUMNS:
        data[column] = pd.Series([d.get(column) for d in derived], dtype=object)
    return pd.DataFrame(data, index=pd.RangeIndex(len(row_ids)))


def _expectation(check: Check, cfg: DataConfig):
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    meta = {"check": check.name, "table_level": False, "description": check.message,
            "native": check.native, "routes": check.routes, "mostly_table_level": check.mostly}
    bounds = {"patch_size": cfg.max_patch_lines, "statement_size": cfg.max_problem_statement_chars}
    e = gx.expectations
    match check.kind:
        case "flag":
            return e.ExpectColumnValuesToBeInSet(column=check.column, value_set=[True], meta=meta)
        case "schema":
            return e.ExpectColumnValuesToBeInSet(column=check.column, value_set=list(ALLOWED_SCHEMAS), meta=meta)
        case "max":
            return e.ExpectColumnValuesToBeBetween(column=check.column, min_value=0, max_value=bounds[check.name],
                                                   mostly=cfg.size_mostly, meta=meta)
        case "not_null":
            # Only rows that have the field: a missing field is the `schema` check's reason.
            return e.ExpectColumnValuesToNotBeNull(
                column=check.column, row_condition=Column(has_column(check.field)) == True,  # noqa: E712
                meta=meta)
        case "str":
            return e.ExpectColumnValuesToBeOfType(column=check.column, type_="str", meta=meta)
        case "regex":
            return e.ExpectColumnValuesToMatchRegex(column=check.column, regex=check.regex, meta=meta)
        case "not_regex":
            return e.ExpectColumnValuesToNotMatchRegex(column=check.column, regex=check.regex, meta=meta)
        case "max_length":
            return e.ExpectColumnValueLengthsToBeBetween(column=check.column, max_value=bounds[check.name],
                                                         mostly=cfg.size_mostly, meta=meta)
        case "unique":
            return e.ExpectColumnValuesToBeUnique(column=check.column, meta=meta)
    raise ValueError(f"unknown check kind {check.kind!r}")  # pragma: no cover - CHECKS is a constant


def _expectations(cfg: DataConfig, columns: list[str]) -> list[Any]:
    import great_expectations as gx

    exps: list[Any] = [
        gx.expectations.ExpectTableRowCountToBeBetween(
            min_value=1, meta={"check": "table_has_rows", "table_level": True,
                               "description": "the snapshot has at least one row"}
        ),
        gx.expectations.ExpectTableColumnsToMatchSet(
            column_set=list(COLUMNS),
            exact_match=True,
            meta={"check": "table_columns", "table_level": True,
                  "description": "the columns are exactly those of a complete frame: every SWE-smith "
                                 f"core field {list(CORE_FIELDS)} occurs in some row"},
        ),
    ]
    # Expectations on a column the frame lacks (a core field no row has) are left out: the
    # table-level check fails, and every row is quarantined by `schema`.
    exps += [_expectation(c, cfg) for c in CHECKS if c.column in columns]
    return exps


def run_suite(df, cfg: DataConfig) -> tuple[dict[str, Any], list[ExpectationOutcome]]:
    """Validate the frame (`frame`); return the GX result (JSON dict) and the outcomes."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    asset = context.data_sources.add_pandas("snapshot").add_dataframe_asset("rows")
    batch_definition = asset.add_batch_definition_whole_dataframe("all_rows")
    # All expectations at once: `suite.add_expectation` re-serialises the stored suite each time.
    suite = context.suites.add(
        gx.ExpectationSuite(name=SUITE_NAME, expectations=_expectations(cfg, list(df.columns)))
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="validate-snapshot", data=batch_definition, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": df},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID]},
    )
    result_json = result.to_json_dict()
    return result_json, [_outcome(r) for r in result_json["results"]]


def _outcome(r: dict[str, Any]) -> ExpectationOutcome:
    config = r["expectation_config"]
    meta = config.get("meta") or {}
    kwargs = config.get("kwargs") or {}
    res = r.get("result") or {}
    rows = tuple(sorted(int(item[ROW_ID]) for item in res.get("unexpected_index_list") or []))
    exc = r.get("exception_info") or {}
    error = exc.get("exception_message") if exc.get("raised_exception") else None
    return ExpectationOutcome(
        check=meta.get("check", config["type"]),
        expectation=config["type"],
        column=kwargs.get("column"),
        success=bool(r["success"]),
        table_level=bool(meta.get("table_level")),
        failed_rows=rows,
        element_count=res.get("element_count"),
        description=meta.get("description", ""),
        error=error,
        native=bool(meta.get("native", True)),
        routes=bool(meta.get("routes", True)),
        mostly=bool(meta.get("mostly_table_level")),
    )
