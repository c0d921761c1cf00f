"""`hrm corpus build` on the tiny profile's two real sdists: unique, deterministic, valid rows
cut exactly from their modules; kinds restricted and taken in turn."""

from __future__ import annotations

import ast
import json
import random
import re
from collections import Counter

import pytest

from hrm.corpus.build import CORPUS_FILE, SUMMARY_FILE, balanced_sample, build_corpus, file_rows
from hrm.corpus.fetch import package_tree, parse_pin
from hrm.corpus.rows import read_rows
from hrm.regions import split_lines


def _one_function(text: str) -> bool:
    """The text parses on its own as exactly one def (a method under a wrapper)."""
    indented = text[:1] in (" ", "\t")
    try:
        tree = ast.parse("class _W:\n" + text if indented else text)
    except SyntaxError:
        return False
    body = tree.body[0].body if indented else tree.body
    return len(body) == 1 and isinstance(body[0], (ast.FunctionDef, ast.AsyncFunctionDef))


def test_rows_are_unique_valid_and_cut_from_their_modules(built_corpus, corpus_cfg):
    out, summary = built_corpus
    rows = read_rows(out / CORPUS_FILE)
    assert len(rows) == summary.rows > 100
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert len({r.id for r in rows}) == len(rows)
    assert len({(r.buggy, r.fixed) for r in rows}) == len(rows)
    trees = {p.package: package_tree(p.package, corpus_cfg.cache_dir) for p in corpus_cfg.packages}
    per_function = Counter()
    for row in rows:
        assert row.buggy != row.fixed
        assert _one_function(row.buggy) and _one_function(row.fixed), row.id
        assert row.kind in corpus_cfg.kinds
        name, version = parse_pin(row.package)
        assert row.id == f"{name.lower()}-{version}:{row.file}:{row.function}@{row.start_line}:" \
            f"{row.kind}:" + row.id.rsplit(":", 1)[1]
        assert re.fullmatch(r"\d+", row.id.rsplit(":", 1)[1])
        assert not re.search(r"(^|/)(tests?|docs?|examples?)/", row.file)
        # the fixed text is the function exactly as the module has it, at its line
        module = split_lines((trees[row.package] / row.file).read_text(encoding="utf-8"))
        n = len(split_lines(row.fixed))
        assert "".join(module[row.start_line - 1: row.start_line - 1 + n]) == row.fixed
        assert n <= corpus_cfg.max_function_lines
        short = row.function.split(".<locals>.")[0]
        assert row.problem_statement.startswith(f"`{short}` in `")
        per_function[(row.package, row.file, row.function)] += 1
    assert max(per_function.values()) <= corpus_cfg.max_per_function
    assert summary.by_kind == dict(sorted(Counter(r.kind for r in rows).items()))
    assert summary.by_package == dict(sorted(Counter(r.package for r in rows).items()))
    assert summary.functions == len(per_function)
    assert set(summary.by_package) == {p.package for p in corpus_cfg.packages}
    assert {p: m["archive"] for p, m in summary.packages.items()} == {
        "tabulate==0.9.0": "tabulate-0.9.0.tar.gz",
        "sortedcontainers==2.4.0": "sortedcontainers-2.4.0.tar.gz"}
    on_disk = json.loads((out / SUMMARY_FILE).read_text())
    assert on_disk["rows"] == summary.rows and on_disk["by_kind"] == summary.by_kind


def test_deterministic_for_a_seed_whatever_the_workers(built_corpus, corpus_cfg, tmp_path):
    out, _ = built_corpus
    build_corpus(corpus_cfg.model_copy(update={"workers": 2}), tmp_path / "again",
                 progress=False)
    assert (tmp_path / "again" / CORPUS_FILE).read_bytes() == (out / CORPUS_FILE).read_bytes()
    build_corpus(corpus_cfg.model_copy(update={"seed": 7}), tmp_path / "other", progress=False)
    assert (tmp_path / "other" / CORPUS_FILE).read_bytes() != (out / CORPUS_FILE).read_bytes()


def test_kinds_are_restricted_to_the_config(corpus_cfg, tmp_path):
    kinds = ["op_swap", "wrong_return", "swap_args"]
    summary = build_corpus(corpus_cfg.model_copy(update={"kinds": kinds}), tmp_path,
                           progress=False)
    assert set(summary.by_kind) == set(kinds)  # each occurs, nothing else does
    assert {r.kind for r in read_rows(tmp_path / CORPUS_FILE)} == set(kinds)


def test_max_rows_sample_takes_kinds_in_turn(built_corpus, corpus_cfg, tmp_path):
    out, full = built_corpus
    limit = 40
    summary = build_corpus(corpus_cfg.model_copy(update={"max_rows": limit}), tmp_path,
                           progress=False)
    assert summary.rows == limit and summary.candidates == full.rows
    available = full.by_kind
    got = summary.by_kind
    level = max(got.values())
    for kind, n in available.items():
        # every kind gets its turn: all of its rows, or within one of the largest share
        assert got.get(kind, 0) == n or got[kind] >= level - 1, (got, available)
    assert got["var_misuse"] < available["var_misuse"]  # the crowding kind was cut
    sample = {r.id: r for r in read_rows(tmp_path / CORPUS_FILE)}
    whole = {r.id: r for r in read_rows(out / CORPUS_FILE)}
    assert all(whole[i] == r for i, r in sample.items())


def _rows(kinds: dict[str, int]) -> list[dict]:
    return [{"id": f"{kind}-{k}", "kind": kind} for kind, n in kinds.items() for k in range(n)]


def test_balanced_sample_deals_kinds_in_turn():
    rows = _rows({"a_many": 10, "b_some": 3, "c_one": 1})
    got = balanced_sample(list(rows), 7, seed=0)
    assert Counter(r["kind"] for r in got) == {"a_many": 3, "b_some": 3, "c_one": 1}
    # the first round holds one row of each kind, in kind order
    assert [r["kind"] for r in got[:3]] == ["a_many", "b_some", "c_one"]
    assert len({r["id"] for r in got}) == 7
    assert balanced_sample(list(rows), 7, seed=0) == got  # deterministic for a seed
    seeds = {tuple(r["id"] for r in balanced_sample(list(rows), 7, seed=s)) for s in range(8)}
    assert len(seeds) > 1  # which rows of a kind is seeded
    assert sorted(r["id"] for r in balanced_sample(list(rows), 100, seed=0)) == sorted(
        r["id"] for r in rows)
    assert balanced_sample(list(rows), 0, seed=0) == []
    big = _rows({k: random.Random(k).randrange(1, 30) for k in ("p", "q", "r", "s", "t")})
    for limit in range(1, len(big)):
        counts = Counter(r["kind"] for r in balanced_sample(list(big), limit, seed=limit))
        avail = Counter(r["kind"] for r in big)
        top = max(counts.values())
        assert sum(counts.values()) == limit
        assert all(counts[k] == avail[k] or counts[k] >= top - 1 for k in avail)


def test_functions_are_cut_at_ast_lines_even_after_a_form_feed(corpus_cfg, tmp_path):
    """A page break (`\\f`) is not a line break for Python: functions after it are cut from
    the right lines."""
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    source = ("def first(a, b):\n    return a - b\n\n\x0c\n"
              "def second(a, b):\n    # after a page break\n    return a < b\n")
    (tree / "pkg" / "mod.py").write_bytes(source.encode())
    cfg = corpus_cfg.model_copy(update={"kinds": ["op_swap"], "max_per_function": 4})
    rows = file_rows("pkg==1.0", str(tree), "pkg/mod.py", cfg.model_dump_json())
    by_function = {r["function"]: r for r in rows}
    assert set(by_function) == {"first", "second"}
    assert by_function["second"]["fixed"] == (
        "def second(a, b):\n    # after a page break\n    return a < b\n")
    assert by_function["second"]["start_line"] == 5
    assert by_function["second"]["buggy"].endswith("    return b < a\n")


def test_unpinned_package_is_refused(corpus_cfg, tmp_path):
    from hrm.config import CorpusPackage
    from hrm.errors import InputError

    cfg = corpus_cfg.model_copy(update={"packages": [CorpusPackage(package="tabulate>=0.9")]})
    with pytest.raises(InputError, match="not pinned"):
        build_corpus(cfg, tmp_path, progress=False)
    assert not (tmp_path / CORPUS_FILE).exists()

