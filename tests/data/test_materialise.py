"""`materialise` without DVC: an explicit source always wins; `synth:NAME` picks the environment,
`synth:` takes every environment of `synth.envs`."""

from __future__ import annotations

import json

import pytest

from hrm.config import load_params
from hrm.data import materialise as mat
from hrm.errors import InputError

TENACITY = "swesmith/jd__tenacity.0d40e76f"
FUNCY = "swesmith/Suor__funcy.207a7810"
SCHEMA = "swesmith/keleshev__schema.24a30457"
OTHER = "swesmith/acme__widgets.py.1234abcd"


@pytest.fixture()
def params(repo_root):
    params = load_params(repo_root / "params.yaml", "tiny")
    repos = dict(params.envs.repos)
    repos[OTHER] = repos[TENACITY]
    params.envs.repos = repos
    return params


@pytest.mark.parametrize(("source", "env"), [
    ("synth:tenacity", TENACITY),
    ("synth:jd__tenacity", TENACITY),
    (f"synth:{TENACITY}", TENACITY),
    ("synth:schema", SCHEMA),
    ("synth:widgets.py", OTHER),
    (f"synth:{OTHER}", OTHER),
])
def test_synth_name_selects_the_environment(params, source, env):
    assert mat.synth_env(params, source) == env
    assert mat.synth_envs(params, source) == [env]


def test_empty_synth_name_means_every_configured_environment(params):
    assert mat.synth_envs(params, "synth:") == params.synth.envs == [TENACITY, FUNCY, SCHEMA]
    with pytest.raises(InputError, match="names no environment"):
        mat.synth_env(params, "synth:")


def test_unknown_synth_name_is_an_error_naming_envs_repos(params):
    with pytest.raises(InputError, match=r"no environment 'nope' in envs\.repos \(known: "):
        mat.synth_env(params, "synth:nope")


def test_materialise_generates_from_the_named_environment_only(params, repo_root, tmp_path):
    """A real `synth:schema` run (one instance): the snapshot holds schema rows only, the
    generator's resume files do not stay in the data directory, the caller's params are kept."""
    params.synth.max_instances = 1
    params.synth.max_pass_to_pass = 3
    params.envs.cache_dir = str(repo_root / ".cache" / "hrm-envs")
    result = mat.materialise(params, source="synth:schema", root=tmp_path)
    assert (result.action, result.replaced, result.tracked) == ("synth", False, False)
    assert f"{SCHEMA}: 1" in result.message
    snapshot = tmp_path / params.data.snapshot
    rows = [json.loads(line) for line in snapshot.read_text().splitlines()]
    assert [r["repo"] for r in rows] == [SCHEMA]
    assert sorted(p.name for p in snapshot.parent.iterdir()) == ["instances.jsonl"]
    assert params.synth.envs == [TENACITY, FUNCY, SCHEMA]


def test_explicit_source_replaces_an_existing_snapshot(params, sample_path, tmp_path):
    snapshot = tmp_path / "data" / "instances.jsonl"
    snapshot.parent.mkdir()
    snapshot.write_text("old\n")
    # resume files of an earlier synth run
    (snapshot.parent / "instances.jsonl.state.json").write_text("{}")
    (snapshot.parent / "instances.jsonl.baseline.json").write_text("{}")
    params.data.source = "/nonexistent/never/read"

    kept = mat.materialise(params, root=tmp_path)
    assert (kept.action, kept.replaced) == ("present", False)
    assert snapshot.read_text() == "old\n"

    result = mat.materialise(params, source=str(sample_path), root=tmp_path)
    assert (result.action, result.replaced, result.tracked) == ("pull", True, False)
    assert "replaced the existing snapshot" in result.message and str(snapshot) in result.message
    assert len(snapshot.read_text().splitlines()) == 57
    assert sorted(p.name for p in snapshot.parent.iterdir()) == ["instances.jsonl"]


def test_failed_explicit_source_keeps_the_old_snapshot(params, tmp_path):
    snapshot = tmp_path / "data" / "instances.jsonl"
    snapshot.parent.mkdir()
    snapshot.write_text("old\n")
    with pytest.raises(InputError, match="source not found"):
        mat.materialise(params, source=str(tmp_path / "missing.jsonl"), root=tmp_path)
    assert snapshot.read_text() == "old\n"
