"""Pinned sources (`hrm.corpus.fetch`) and the corpus row file (`hrm.corpus.rows`)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from hrm.corpus.fetch import package_marker, package_tree, parse_pin, source_files
from hrm.corpus.rows import FIELDS, CorpusRow, read_rows, write_rows
from hrm.errors import InputError


@pytest.mark.parametrize("req", ["tabulate==0.9.0", " attrs==24.2.0 ",
                                 "python-dateutil==2.9.0.post0", "zope.interface==6.4"])
def test_parse_pin_accepts_exact_pins(req):
    name, version = parse_pin(req)
    assert f"{name}=={version}" == req.strip()


@pytest.mark.parametrize("req", ["tabulate", "tabulate>=0.9", "tabulate==0.*", "tabulate~=0.9",
                                 "tabulate==0.9,<1", "tabulate[extra]==0.9", "tabulate === 0.9",
                                 "git+https://example.org/t.git", ""])
def test_parse_pin_refuses_anything_unpinned(req):
    with pytest.raises(InputError, match="is not pinned as NAME==VERSION"):
        parse_pin(req)


def test_source_files_skip_tests_docs_and_tooling(tmp_path):
    files = ["pkg/__init__.py", "pkg/core.py", "pkg/sub/util.py", "src/other/mod.py",
             "tests/test_core.py", "pkg/tests/helpers.py", "docs/conf.py", "examples/demo.py",
             "benchmarks/b.py", "setup.py", "conftest.py", "pkg/test_inline.py",
             "pkg/thing_test.py", ".hidden/x.py", "pkg/data.txt", "tools/release.py"]
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    got = [p.relative_to(tmp_path).as_posix() for p in source_files(tmp_path)]
    assert got == ["pkg/__init__.py", "pkg/core.py", "pkg/sub/util.py", "src/other/mod.py"]
    got = [p.relative_to(tmp_path).as_posix() for p in source_files(tmp_path, ["pkg"])]
    assert got == ["pkg/__init__.py", "pkg/core.py", "pkg/sub/util.py"]
    with pytest.raises(InputError, match="source dir nope not in the sdist"):
        source_files(tmp_path, ["nope"])


def test_cached_sdists_and_their_modules(corpus_cfg):
    for spec in corpus_cfg.packages:
        tree = package_tree(spec.package, corpus_cfg.cache_dir)
        marker = package_marker(tree)
        assert marker["requirement"] == spec.package and len(marker["sha256"]) == 64
        files = [p.relative_to(tree).as_posix() for p in source_files(tree)]
        assert files and all(f.endswith(".py") for f in files)
        assert not any(part in ("tests", "test", "docs") for f in files for part in f.split("/"))
        assert not any(f.rsplit("/", 1)[-1].startswith("test_") or f == "setup.py"
                       for f in files)
    # tabulate's sdist ships its tests next to the package: they are left out
    tree = package_tree("tabulate==0.9.0", corpus_cfg.cache_dir)
    assert (tree / "test" / "test_api.py").is_file()
    files = {p.relative_to(tree).as_posix() for p in source_files(tree)}
    assert {"tabulate/__init__.py", "tabulate/version.py"} <= files
    assert not any(f.startswith("test/") for f in files)
    # and sortedcontainers' setup.py
    tree = package_tree("sortedcontainers==2.4.0", corpus_cfg.cache_dir)
    assert (tree / "setup.py").is_file()
    assert [p.relative_to(tree).as_posix() for p in source_files(tree)] == [
        "sortedcontainers/__init__.py", "sortedcontainers/sorteddict.py",
        "sortedcontainers/sortedlist.py", "sortedcontainers/sortedset.py"]


ROW = CorpusRow(id="p-1.0:m.py:f:op_swap:0", package="p==1.0", file="m.py", function="f",
                kind="op_swap", start_line=3, buggy="def f(a, b):\n    return b - a\n",
                fixed="def f(a, b):\n    return a - b\n",
                problem_statement="`f` in `m` misbehaves\n")


def test_rows_round_trip_atomically(tmp_path):
    path = tmp_path / "corpus.jsonl"
    other = CorpusRow(**{**asdict(ROW), "id": "p-1.0:m.py:f:op_swap:1", "buggy": "é\n"})
    assert write_rows(path, [ROW, other]) == 2
    assert read_rows(path) == [ROW, other]
    assert not (tmp_path / "corpus.jsonl.partial").exists()
    assert "é" in path.read_text(encoding="utf-8")  # not escaped
    path.write_text(path.read_text() + "\n  \n")  # blank lines are not rows
    assert read_rows(path) == [ROW, other]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "a corpus row has exactly the fields"),
        (json.dumps({k: v for k, v in asdict(ROW).items() if k != "kind"}),
         "a corpus row has exactly the fields .* got \\['buggy'"),
        (json.dumps({**asdict(ROW), "extra": 1}), "a corpus row has exactly the fields .*'extra'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps(asdict(ROW)) + "\n\n" + line + "\n")
    with pytest.raises(InputError, match=f"corpus.jsonl:3: {message}"):
        read_rows(path)


def test_missing_corpus_file(tmp_path):
    with pytest.raises(InputError, match="nope.jsonl: corpus file not found"):
        read_rows(tmp_path / "nope.jsonl")
    assert FIELDS[0] == "id" and len(FIELDS) == 9
