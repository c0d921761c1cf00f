"""`materialise` without DVC: an explicit source always wins; `synth:NAME` picks the environment."""

from __future__ import annotations

import pytest

from hrm.config import load_params
from hrm.data import materialise as mat
from hrm.errors import InputError

TENACITY = "swesmith/jd__tenacity.0d40e76f"
OTHER = "swesmith/acme__widgets.py.1234abcd"


@pytest.fixture()
def params(repo_root):
    params = load_params(repo_root / "params.yaml", "tiny")
    repos = dict(params.envs.repos)
    repos[OTHER] = repos[TENACITY]
    params.envs.repos = repos
    return params


@pytest.mark.parametrize(("source", "env"), [
    ("synth:", TENACITY),
    ("synth:tenacity", TENACITY),
    ("synth:jd__tenacity", TENACITY),
    (f"synth:{TENACITY}", TENACITY),
    ("synth:widgets.py", OTHER),
    (f"synth:{OTHER}", OTHER),
])
def test_synth_name_selects_the_environment(params, source, env):
    assert mat.synth_env(params, source) == env


def test_unknown_synth_name_is_an_error_naming_envs_repos(params):
    with pytest.raises(InputError, match=r"no environment 'nope' in envs\.repos \(known: "):
        mat.synth_env(params, "synth:nope")


def test_obtain_generates_from_the_named_environment(params, tmp_path, monkeypatch):
    seen = []

    def fake_synthesize(p, out_path):
        seen.append(p.synth.env)
        out_path.write_text("{}\n")

    monkeypatch.setattr("hrm.synth.synthesize", fake_synthesize)
    action, message = mat.obtain(params, "synth:widgets.py", tmp_path / "out.jsonl")
    assert (action, seen) == ("synth", [OTHER])
    assert OTHER in message
    assert params.synth.env == TENACITY  # the caller's params are not changed


def test_explicit_source_replaces_an_existing_snapshot(params, sample_path, tmp_path):
    snapshot = tmp_path / "data" / "instances.jsonl"
    snapshot.parent.mkdir()
    snapshot.write_text("old\n")
    (snapshot.parent / "instances.jsonl.state.json").write_text("{}")  # from an earlier synth
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
