"""The Great Expectations suite of `hrm data validate`, run on an ephemeral context.

Row checks (`hrm.data.checks.CHECKS`) become column expectations on the derived columns; two
table-level expectations check the table as a whole (it has rows; it has every required
SWE-smith column). Results use `result_format=COMPLETE` with `unexpected_index_column_names`
set to the row id column, so GX itself reports which rows failed which expectation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hrm.config import DataConfig
from hrm.data.checks import CHECKS
from hrm.data.schemas import ALLOWED_SCHEMAS, REQUIRED_FIELDS

ROW_ID = "_row_id"
SUITE_NAME = "swe-smith-instances"


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


def _expectations(cfg: DataConfig, columns: list[str]) -> list[Any]:
    import great_expectations as gx

    exps: list[Any] = [
        gx.expectations.ExpectTableRowCountToBeBetween(
            min_value=1, meta={"check": "table_has_rows", "table_level": True,
                               "description": "the snapshot has at least one row"}
        ),
        gx.expectations.ExpectTableColumnsToMatchSet(
            column_set=[*REQUIRED_FIELDS, ROW_ID, *(c.column for c in CHECKS)],
            exact_match=False,
            meta={"check": "table_columns", "table_level": True,
                  "description": f"the table has the SWE-smith columns {list(REQUIRED_FIELDS)}"},
        ),
    ]
    bounds = {"patch_size": cfg.max_patch_lines, "statement_size": cfg.max_problem_statement_chars}
    for check in CHECKS:
        meta = {"check": check.name, "table_level": False, "description": check.message}
        if check.kind == "flag":
            exps.append(gx.expectations.ExpectColumnValuesToBeInSet(column=check.column, value_set=[True], meta=meta))
        elif check.kind == "schema":
            exps.append(gx.expectations.ExpectColumnValuesToBeInSet(
                column=check.column, value_set=list(ALLOWED_SCHEMAS), meta=meta))
        elif check.kind == "max":
            # `mostly`: the share of rows within bounds is itself a table-level property;
            # out-of-bounds rows are still quarantined one by one.
            meta = {**meta, "mostly_table_level": True}
            exps.append(gx.expectations.ExpectColumnValuesToBeBetween(
                column=check.column, min_value=0, max_value=bounds[check.name],
                mostly=cfg.size_mostly, meta=meta))
        else:  # pragma: no cover - CHECKS is a constant
            raise ValueError(f"unknown check kind {check.kind!r}")
    return exps


def run_suite(df, cfg: DataConfig) -> tuple[dict[str, Any], list[ExpectationOutcome]]:
    """Validate the derived DataFrame; return the GX result (JSON dict) and the outcomes."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    asset = context.data_sources.add_pandas("snapshot").add_dataframe_asset("rows")
    batch_definition = asset.add_batch_definition_whole_dataframe("all_rows")
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    for expectation in _expectations(cfg, list(df.columns)):
        suite.add_expectation(expectation)
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
    )
