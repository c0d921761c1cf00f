"""The row schemas SWE-smith has published, how a raw row is classified, and its normalisation.

Two SWE-smith schemas exist: the current 7-field one (the Hugging Face dataset) and an older
9-field one (SWE-smith's own test logs) that adds `created_at` and `base_commit`. Both carry
`image_name` (the offline generator and the SWE-bench converter write `""`). A row is classified
by its exact set of schema fields (the 9 names above): it must be exactly one of the two sets;
fields outside those 9 are extras, kept and passed through, and do not change the class.
SWE-bench rows look similar but their `patch` is the FIX, so they are recognised here and never
mistaken for SWE-smith rows.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hrm.data.instance import CORE_FIELDS

SCHEMA_7 = "swe-smith-7"
SCHEMA_9 = "swe-smith-9"
SCHEMA_SWE_BENCH = "swe-bench"
SCHEMA_INCOMPLETE = "incomplete"
ALLOWED_SCHEMAS = (SCHEMA_7, SCHEMA_9)

FIELDS_7 = frozenset(CORE_FIELDS)
OLDER_FIELDS = ("created_at", "base_commit")
FIELDS_9 = FIELDS_7 | set(OLDER_FIELDS)
SCHEMA_FIELDS = {SCHEMA_7: FIELDS_7, SCHEMA_9: FIELDS_9}
REQUIRED_FIELDS = CORE_FIELDS
"""Every core field is required, `image_name` included (it may be the empty string)."""

# Fields only SWE-bench rows carry (SWE-smith never has them).
SWE_BENCH_MARKERS = frozenset({"test_patch", "version", "environment_setup_commit", "hints_text"})
# SWE-bench ids are `{owner}__{repo}-{PR number}`, e.g. `django__django-11099`.
SWE_BENCH_ID_RE = re.compile(r"^(?P<owner>[^\s_][^\s]*?)__(?P<name>[^\s]+)-(?P<number>\d+)$")

TEST_LIST_FIELDS = ("FAIL_TO_PASS", "PASS_TO_PASS")
PROVENANCE_KEY = "_source"
"""Snapshot rows carry `{"file": ..., "line": ...}` of the input line they came from."""
UNPARSED_KEY = "_unparsed"
"""Snapshot rows for unreadable input lines: `{"error": ..., "raw_b64": ...}`."""


def is_swe_bench_row(row: dict[str, Any]) -> bool:
    """True for an unconverted SWE-bench row: SWE-bench-only fields, or a SWE-bench style id."""
    if row.get("converted_from") == "swe-bench":
        return False
    if SWE_BENCH_MARKERS & row.keys():
        return True
    instance_id = row.get("instance_id")
    return isinstance(instance_id, str) and SWE_BENCH_ID_RE.match(instance_id) is not None


def classify(row: dict[str, Any]) -> str:
    """Name the schema of a raw row (one of the SCHEMA_* constants).

    The row's schema fields (those of `FIELDS_9` it has) must be exactly `FIELDS_7` or
    `FIELDS_9`; anything else (a missing core field, one of `created_at`/`base_commit` without
    the other) is `incomplete`. Unknown extra fields do not change the class: they are kept.
    """
    if is_swe_bench_row(row):
        return SCHEMA_SWE_BENCH
    present = FIELDS_9 & row.keys()
    for schema, fields in SCHEMA_FIELDS.items():
        if present == fields:
            return schema
    return SCHEMA_INCOMPLETE


def missing_fields(row: dict[str, Any]) -> list[str]:
    """The fields a row lacks for the schema it is closest to (9-field if it has either of
    `created_at`/`base_commit`, else 7-field), in schema order; [] for a complete row."""
    wanted = (*CORE_FIELDS, *OLDER_FIELDS) if any(f in row for f in OLDER_FIELDS) else CORE_FIELDS
    return [f for f in wanted if f not in row]


def normalise(row: dict[str, Any]) -> dict[str, Any]:
    """Return the row with core fields first and JSON-encoded test lists decoded.

    Values of the wrong type are left as they are (validation names them); nothing is dropped
    and no string is stripped (patches can end with a whitespace-only context line).
    """
    out: dict[str, Any] = {k: row[k] for k in CORE_FIELDS if k in row}
    for key, value in row.items():
        if key not in out:
            out[key] = value
    for key in TEST_LIST_FIELDS:
        value = out.get(key)
        if isinstance(value, str):
            try:
                decoded = json.loads(value)
            except json.JSONDecodeError:
                continue
            if isinstance(decoded, list):
                out[key] = decoded
    return out
