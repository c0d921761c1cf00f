"""`validate_corpus`: the real GX suite quarantines exactly the broken rows, each with its
reason, and keeps every good row."""

from __future__ import annotations

import dataclasses
import json

import pytest

from hrm.corpus.build import CORPUS_FILE
from hrm.corpus.rows import read_rows, write_rows
from hrm.corpus.validate import QUARANTINE_FILE, REPORT_FILE, unit_parses, validate_corpus


def test_unit_parses():
    assert unit_parses("def f():\n    return 1\n")
    assert unit_parses("    @property\n    def f(self):\n        return 1\n")
    assert unit_parses("async def f():\n    await g()\n")
    assert not unit_parses("def f(:\n    pass\n")
    assert not unit_parses("x = 1\n")
    assert not unit_parses("def f():\n    pass\ndef g():\n    pass\n")  # two functions


def test_broken_rows_are_quarantined_with_their_reasons(built_corpus, tmp_path):
    out, _ = built_corpus
    good = read_rows(out / CORPUS_FILE)[:12]
    replace = dataclasses.replace

    def renumber(row, n: int) -> str:
        return row.id.rsplit(":", 1)[0] + f":{900 + n}"

    broken = {
        "parses": replace(good[0], id=renumber(good[0], 0), buggy="def f(:\n    pass\n"),
        "differs": replace(good[1], id=renumber(good[1], 1), buggy=good[1].fixed),
        "kind_known": replace(good[2], id=good[2].id.replace(f":{good[2].kind}:", ":no_kind:"),
                              kind="no_kind"),
        "id_unique": replace(good[3], buggy=good[4].buggy, fixed=good[4].fixed),  # same id as 3
        "id_grammar": replace(good[5], id="not an id"),
        "statement_non_blank": replace(good[6], id=renumber(good[6], 6),
                                       problem_statement=" \n"),
    }
    rows = good[:7] + list(broken.values()) + good[7:]
    write_rows(tmp_path / CORPUS_FILE, rows)
    report = validate_corpus(tmp_path)
    assert (report["rows"], report["valid"], report["quarantined"]) == (18, 12, 6)
    assert report["by_reason"] == dict.fromkeys(sorted(broken), 1)
    assert report["success"] is False and report["table_failures"] == []
    kept = read_rows(tmp_path / CORPUS_FILE)
    assert kept == good  # every good row, the first copy of the repeated id included, in order
    quarantined = [json.loads(line) for line in
                   (tmp_path / QUARANTINE_FILE).read_text().splitlines()]
    assert [q["line"] for q in quarantined] == list(range(8, 14))
    assert [(q["reasons"], q["row"]["id"]) for q in quarantined] == [
        ([reason], row.id) for reason, row in broken.items()]
    on_disk = json.loads((tmp_path / REPORT_FILE).read_text())
    assert on_disk["quarantined"] == 6 and "gx_result" in on_disk
    # validating the cleaned corpus again keeps it whole
    again = validate_corpus(tmp_path)
    assert (again["valid"], again["quarantined"], again["success"]) == (12, 0, True)


def test_an_empty_corpus_fails_the_table_check(tmp_path):
    from hrm.errors import StepFailed

    write_rows(tmp_path / CORPUS_FILE, [])
    with pytest.raises(StepFailed, match="table_has_rows"):
        validate_corpus(tmp_path)


def test_a_repeated_id_keeps_its_first_valid_copy(built_corpus, tmp_path):
    out, _ = built_corpus
    a, b, c = read_rows(out / CORPUS_FILE)[:3]
    bad_first = dataclasses.replace(a, buggy="def f(:\n")
    write_rows(tmp_path / CORPUS_FILE, [bad_first, a, b, dataclasses.replace(b, buggy=c.buggy)])
    report = validate_corpus(tmp_path)
    assert (report["valid"], report["quarantined"]) == (2, 2)
    assert read_rows(tmp_path / CORPUS_FILE) == [a, b]
    quarantined = [json.loads(line) for line in
                   (tmp_path / QUARANTINE_FILE).read_text().splitlines()]
    assert [(q["line"], sorted(q["reasons"])) for q in quarantined] == [
        (1, ["id_unique", "parses"]), (4, ["id_unique"])]
