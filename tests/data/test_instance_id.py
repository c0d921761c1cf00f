"""`parse_instance_id`: owner, repo name (dots allowed), commit and bug type, from the right."""

from __future__ import annotations

import pytest

from hrm.data.instance import parse_instance_id


@pytest.mark.parametrize(("instance_id", "owner", "name", "commit", "bug_type"), [
    ("jd__tenacity.0d40e76f.func_basic__ttznt9oc", "jd", "tenacity", "0d40e76f", "func_basic"),
    ("owner__repo.name.abcdef12.func_pm_x__hash8ab", "owner", "repo.name", "abcdef12",
     "func_pm_x"),
    ("owner__repo.name.abcdef12.pr_123", "owner", "repo.name", "abcdef12", "pr_123"),
    ("pyca__pyopenssl.py.04766a49.lm_rewrite__0z8hmq4c", "pyca", "pyopenssl.py", "04766a49",
     "lm_rewrite"),
    ("a__b.c.d.e.1234567.combine_file__abcdef12", "a", "b.c.d.e", "1234567", "combine_file"),
    ("my-org__my.repo.v2.deadbeef.func_pm_op_swap__12ab34cd", "my-org", "my.repo.v2",
     "deadbeef", "func_pm_op_swap"),
    ("o__r.1.2.0123abcd.pr_7", "o", "r.1.2", "0123abcd", "pr_7"),
])
def test_dotted_repo_names(instance_id, owner, name, commit, bug_type):
    parsed = parse_instance_id(instance_id)
    assert (parsed.owner, parsed.name, parsed.commit, parsed.bug_type) == (
        owner, name, commit, bug_type)
    assert parsed.is_pr == bug_type.startswith("pr_")
    assert parsed.repo == f"swesmith/{owner}__{name}.{commit}"


@pytest.mark.parametrize("instance_id", [
    "",
    "owner__repo.name.abcdef12",  # no bug type
    "owner__repo.name.func_pm_x__hash8ab",  # no commit
    "owner__repo.name.ABCDEF12.pr_1",  # commit not lowercase hex
    "ownerrepo.abcdef12.pr_1",  # no owner separator
    "owner__repo.name.abcdef12.pr_x",  # PR number not a number
    # ids become file names and command arguments: no path parts, shell metacharacters or spaces
    "../../etc__passwd.abcdef12.pr_1",
    "owner__../../x.abcdef12.pr_1",
    "owner__re/po.abcdef12.pr_1",
    "owner;rm -rf ~__repo.abcdef12.pr_1",
    "owner__$(id).abcdef12.pr_1",
    "owner__repo`id`.abcdef12.pr_1",
    "owner__re po.abcdef12.pr_1",
    "-owner__repo.abcdef12.pr_1",  # would read as an option
])
def test_malformed_ids_name_the_id(instance_id):
    with pytest.raises(ValueError, match="malformed instance_id"):
        parse_instance_id(instance_id)
