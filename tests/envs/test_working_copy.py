"""Working copies without `.git` (the execution tier's): same patched files, same isolation."""

from __future__ import annotations

import shutil
import subprocess

from hrm.data.instance import read_instances


def _files(tree):
    return {p.relative_to(tree).as_posix(): p.read_bytes() for p in sorted(tree.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(tree).parts}


def test_plain_copy_patches_like_the_repository_copy(tenacity_env, sample_path):
    """Every sample patch gives the same files (or the same refusal) with or without `.git`."""
    from hrm.envs.errors import PatchError

    checked = 0
    for inst in read_instances(sample_path):
        if inst.repo != tenacity_env.repo_id:
            continue
        results = []
        for git in (True, False):
            with tenacity_env.working_copy(git=git) as tree:
                assert (tree / ".git").exists() is git
                try:
                    tenacity_env.apply_patch(tree, inst.patch)
                except PatchError:
                    results.append("does not apply")
                    continue
                results.append(_files(tree))
        assert results[0] == results[1], inst.instance_id
        checked += results[0] != "does not apply"
    assert checked >= 5


def test_plain_copy_inside_a_repository_is_patched_in_place(tenacity_env, sample_path, tmp_path):
    """A `.git`-less tree nested in another repository: the patch lands in the tree, never
    in the repository around it."""
    from hrm.envs.errors import PatchError

    def applies(inst) -> bool:
        with tenacity_env.working_copy(git=False) as tree:
            try:
                tenacity_env.apply_patch(tree, inst.patch)
            except PatchError:
                return False
        return True

    inst = next(i for i in read_instances(sample_path)
                if i.repo == tenacity_env.repo_id and applies(i))
    outer = tmp_path / "outer"
    outer.mkdir()
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    tree = outer / "sub" / "tree"
    shutil.copytree(tenacity_env.pristine, tree, ignore=shutil.ignore_patterns(".git"))
    before = _files(tree)
    tenacity_env.apply_patch(tree, inst.patch)
    assert _files(tree) != before
    assert not any(p.name != ".git" for p in outer.iterdir() if p.name != "sub")


def test_malicious_run_in_a_plain_copy_cannot_alter_the_pristine(tenacity_env, tree_hash):
    """Test code that rewrites the tree's files and attacks the pristine tree and the venv by
    absolute path changes nothing on the host, not even its own copy."""
    pristine = tenacity_env.pristine
    before = tree_hash(tenacity_env.root)
    attack = (
        "import os, pathlib\n"
        "def test_attack():\n"
        "    here = pathlib.Path(__file__).resolve().parent.parent\n"
        "    (here / 'tenacity' / '__init__.py').write_text('owned = 1\\n')\n"
        "    (here / 'setup.py').unlink()\n"
        f"    for target in [{str(pristine / 'tenacity' / '__init__.py')!r},\n"
        f"                   {str(pristine / 'setup.py')!r},\n"
        f"                   {str(tenacity_env.python)!r}]:\n"
        "        try:\n"
        "            with open(target, 'a') as fh:\n"
        "                fh.write('owned')\n"
        "        except OSError:\n"
        "            pass\n"
        "        try:\n"
        "            os.unlink(target)\n"
        "        except OSError:\n"
        "            pass\n"
    )
    with tenacity_env.working_copy(git=False) as tree:
        (tree / "tests" / "test_attack.py").write_text(attack)
        run = tenacity_env.run_tests(tree, ["tests/test_attack.py::test_attack"])
        assert run.passed, run.output[-800:]
        # its own rewrites landed in the run's overlay (envs.max_tree_mb) and are gone
        assert (tree / "tenacity" / "__init__.py").read_text() != "owned = 1\n"
        assert (tree / "setup.py").exists()
    assert tree_hash(tenacity_env.root) == before
