"""The corpus's own checks: a Great Expectations suite over `corpus.jsonl`, bad rows quarantined.

GX checks what it expresses natively (non-null ids and texts, the id grammar, a pinned package,
known kinds, unique ids, a non-blank statement); Python derives what GX cannot (both versions of
the function parse on their own, the bug changes the text) into columns GX asserts on. A failing
row is moved to `quarantine.jsonl` with every reason; the valid rows are written back to
`corpus.jsonl` (atomically); `validation.json` holds the counts and the GX result.
"""

from __future__ import annotations

import ast
import json
from dataclasses import asdict
from pathlib import Path

from hrm.corpus.rows import CorpusRow, read_rows, write_rows
from hrm.synth.mutations import KINDS

QUARANTINE_FILE = "quarantine.jsonl"
REPORT_FILE = "validation.json"
ROW_ID = "_row"
_ID_REGEX = r"^[a-z0-9._-]+-[^:\s]+:[^:\s]+\.py:[^:\s@]+@[0-9]+:[a-z_]+:[0-9]+$"
_PIN_REGEX = r"^[A-Za-z0-9][A-Za-z0-9._-]*==\S+$"


def unit_parses(text: str) -> bool:
    """The text parses as the one function it should be (indented methods under `if 1:`)."""
    source = "if 1:\n" + text if text[:1] in (" ", "\t") else text
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return False
    body = tree.body[0].body if text[:1] in (" ", "\t") else tree.body
    return len(body) == 1 and isinstance(body[0], (ast.FunctionDef, ast.AsyncFunctionDef))


def _expectations():
    import great_expectations as gx

    e = gx.expectations

    def meta(check: str, description: str) -> dict:
        return {"check": check, "description": description}

    return [
        e.ExpectTableRowCountToBeBetween(min_value=1, meta=meta("table_has_rows", "the corpus has rows")),
        e.ExpectColumnValuesToNotBeNull(column="id", meta=meta("id_present", "id is present")),
        e.ExpectColumnValuesToMatchRegex(column="id", regex=_ID_REGEX,
                                         meta=meta("id_grammar", "id is <pkg>-<ver>:<file>:<function>@<line>:<kind>:<n>")),
        e.ExpectColumnValuesToBeUnique(column="id", meta=meta("id_unique", "ids are unique")),
        e.ExpectColumnValuesToMatchRegex(column="package", regex=_PIN_REGEX,
                                         meta=meta("package_pinned", "package is NAME==VERSION")),
        e.ExpectColumnValuesToBeInSet(column="kind", value_set=list(KINDS),
                                      meta=meta("kind_known", "kind is a mutation kind")),
        e.ExpectColumnValuesToNotBeNull(column="buggy", meta=meta("buggy_present", "buggy text present")),
        e.ExpectColumnValuesToNotBeNull(column="fixed", meta=meta("fixed_present", "fixed text present")),
        e.ExpectColumnValuesToMatchRegex(column="problem_statement", regex=r"\S",
                                         meta=meta("statement_non_blank", "problem statement is not blank")),
        e.ExpectColumnValuesToBeInSet(column="_parses", value_set=[True],
                                      meta=meta("parses", "both versions parse as one function")),
        e.ExpectColumnValuesToBeInSet(column="_differs", value_set=[True],
                                      meta=meta("differs", "the bug changes the function's text")),
    ]


def validate_corpus(out_dir: str | Path) -> dict:
    """Validate `out_dir/corpus.jsonl` in place; returns the counts written to validation.json."""
    import great_expectations as gx
    import pandas as pd

    out_dir = Path(out_dir)
    path = out_dir / "corpus.jsonl"
    rows = read_rows(path)
    df = pd.DataFrame({
        ROW_ID: list(range(len(rows))),
        **{name: pd.Series([getattr(r, name) for r in rows], dtype=object)
           for name in ("id", "package", "kind", "buggy", "fixed", "problem_statement")},
        "_parses": pd.Series([unit_parses(r.buggy) and unit_parses(r.fixed) for r in rows], dtype=object),
        "_differs": pd.Series([r.buggy != r.fixed for r in rows], dtype=object),
    })
    context = gx.get_context(mode="ephemeral")
    batch = context.data_sources.add_pandas("corpus").add_dataframe_asset("rows") \
        .add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name="corpus", expectations=_expectations()))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="validate-corpus", data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": df},
                            result_format={"result_format": "COMPLETE",
                                           "unexpected_index_column_names": [ROW_ID]}).to_json_dict()
    reasons: dict[int, list[str]] = {}
    table_failures = []
    for r in result["results"]:
        check = (r["expectation_config"].get("meta") or {}).get("check", r["expectation_config"]["type"])
        if r["success"]:
            continue
        failed = [int(x[ROW_ID]) for x in (r.get("result") or {}).get("unexpected_index_list") or []]
        if not failed:
            table_failures.append(check)
        for i in failed:
            reasons.setdefault(i, []).append(check)
    # GX flags every row of a repeated id; the first copy that passes every other check is the
    # row itself, only the others are duplicates.
    kept_ids: set[str] = set()
    for i, row in enumerate(rows):
        if reasons.get(i) == ["id_unique"] and row.id not in kept_ids:
            kept_ids.add(row.id)
            del reasons[i]
    good: list[CorpusRow] = [row for i, row in enumerate(rows) if i not in reasons]
    with (out_dir / QUARANTINE_FILE).open("w", encoding="utf-8") as fh:
        for i in sorted(reasons):
            fh.write(json.dumps({"line": i + 1, "reasons": reasons[i], "row": asdict(rows[i])},
                                ensure_ascii=False) + "\n")
    write_rows(path, good)
    report = {"rows": len(rows), "valid": len(good), "quarantined": len(reasons),
              "table_failures": table_failures,
              "by_reason": {c: sum(c in v for v in reasons.values())
                            for c in sorted({c for v in reasons.values() for c in v})},
              "success": bool(result["success"])}
    (out_dir / REPORT_FILE).write_text(json.dumps({**report, "gx_result": result}, indent=1) + "\n")
    if table_failures:
        from hrm.errors import StepFailed

        raise StepFailed(f"{path}: table-level checks failed: {table_failures} (see {out_dir / REPORT_FILE})")
    return report
