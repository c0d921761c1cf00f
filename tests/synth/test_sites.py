"""Which files and kinds the generator mutates: never a test file; only `synth.kinds`."""

from __future__ import annotations

from pathlib import Path

from hrm.config import EnvSpec
from hrm.synth.generator import is_test_file, ordered_sites, source_files
from hrm.synth.mutations import KINDS, enumerate_sites

FILES = ["pkg/__init__.py", "pkg/core.py", "pkg/test_core.py", "pkg/core_test.py",
         "pkg/conftest.py", "pkg/tests/helpers.py", "pkg/sub/testing/util.py", "pkg/checks/h.py",
         "pkg/sub/contest.py", "tests/test_top.py", "setup.py"]


def _tree(root: Path) -> Path:
    for rel in FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("def f(a, b):\n    return a - b\n")
    return root


def test_test_files_inside_source_dirs_are_skipped(tmp_path):
    tree = _tree(tmp_path)
    spec = EnvSpec(package="x==1", source_dirs=["pkg"], test_dirs=["."])  # tests beside it
    assert source_files(tree, spec) == ["pkg/__init__.py", "pkg/checks/h.py", "pkg/core.py",
                                        "pkg/sub/contest.py"]
    nested = EnvSpec(package="x==1", source_dirs=["pkg"], test_dirs=["pkg/checks"])
    assert "pkg/checks/h.py" not in source_files(tree, nested)
    # a test dir that is the source dir itself excludes by name only
    same = EnvSpec(package="x==1", source_dirs=["pkg"], test_dirs=["pkg"])
    assert source_files(tree, same) == source_files(tree, spec)
    # a source dir "." still never yields a test file
    everything = EnvSpec(package="x==1", source_dirs=["."], test_dirs=["tests"])
    assert source_files(tree, everything) == ["pkg/__init__.py", "pkg/checks/h.py",
                                              "pkg/core.py", "pkg/sub/contest.py", "setup.py"]
    assert is_test_file("tests/test_top.py", everything)


def test_schema_sites_come_from_the_package_only(schema_env):
    """schema's test dir is `.`: its tests (test_schema.py) sit next to the package."""
    assert source_files(schema_env.pristine, schema_env.spec) == ["schema/__init__.py"]
    assert {s.file for s in ordered_sites(schema_env, 0)} == {"schema/__init__.py"}


def test_only_the_configured_kinds_are_tried_in_turn(tenacity_synth_env):
    env = tenacity_synth_env
    kinds = ["remove_cond", "op_swap"]  # listed out of KINDS order on purpose
    sites = ordered_sites(env, 0, kinds)
    assert {s.kind for s in sites} == set(kinds)
    expected = {s.key for rel in source_files(env.pristine, env.spec)
                for s in enumerate_sites((env.pristine / rel).read_text(), rel)
                if s.kind in kinds}
    assert {s.key for s in sites} == expected and len(sites) == len(expected)
    # round-robin in KINDS order (op_swap before remove_cond), whatever order they are listed
    n = min(sum(s.kind == k for s in sites) for k in kinds)
    first = sorted(kinds, key=KINDS.index)
    assert [s.kind for s in sites[:2 * n]] == first * n
    assert sites == ordered_sites(env, 0, ["op_swap", "remove_cond"])
    assert sites != ordered_sites(env, 1, kinds)
