"""The generator's instances are valid SWE-smith instances, checked independently of its own
bookkeeping: they parse, apply to the pristine tree, FAIL_TO_PASS fails with the bug and
passes without, and the problem statement shows no diff. Several environments go into one
file (in `synth.envs` order) and a run resumes per environment."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from hrm.data.instance import parse_instance_id, read_instances
from hrm.errors import InputError

SCHEMA = "swesmith/keleshev__schema.24a30457"
TENACITY = "swesmith/jd__tenacity.0d40e76f"


def test_instances_are_valid_and_grouped_by_environment(synth_run, synth_params):
    from hrm.envs import get_environment

    result, out = synth_run
    assert [e.env for e in result.envs] == [TENACITY, SCHEMA]
    for e in result.envs:
        assert e.kept == 2 and e.stopped_by == "max_instances", e
        assert e.tried >= e.kept and e.baseline_passed > 100 and e.candidates > e.tried
        assert set(e.kept_by_kind) <= set(synth_params.synth.kinds)
    assert result.kept == 4 and result.tried == sum(e.tried for e in result.envs)
    rows = read_instances(out)
    assert [r.repo for r in rows] == [TENACITY, TENACITY, SCHEMA, SCHEMA]
    assert len({r.instance_id for r in rows}) == 4
    envs = {}
    for inst in rows:
        env = envs.get(inst.repo) or get_environment(inst.repo, synth_params.envs)
        envs[inst.repo] = env
        pid = parse_instance_id(inst.instance_id)
        assert pid.repo == inst.repo
        assert pid.bug_type.removeprefix("func_pm_") in synth_params.synth.kinds
        assert inst.image_name == ""
        assert inst.FAIL_TO_PASS and not set(inst.FAIL_TO_PASS) & set(inst.PASS_TO_PASS)
        assert len(inst.PASS_TO_PASS) <= synth_params.synth.max_pass_to_pass
        patch_lines = {ln[1:].strip() for ln in inst.patch.splitlines()
                       if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
                       and len(ln[1:].strip()) >= 6}
        for line in inst.problem_statement.splitlines():
            assert not line.startswith(("+", "-", "@@", "diff --git")), line
            assert not any(p in line for p in patch_lines), line
            assert not re.search(r"0x[0-9a-fA-F]{6,}|/tmp/|hrm-synth-wc-", line), line
        with env.working_copy() as tree:
            env.apply_patch(tree, inst.patch)
            bug = env.run_tests(tree, inst.FAIL_TO_PASS)
            assert not bug.passed and all(r.outcome != "passed" for r in bug.results.values())
            env.apply_patch(tree, inst.patch, reverse=True)
            assert env.run_tests(tree, inst.FAIL_TO_PASS + inst.PASS_TO_PASS).passed


def test_rerun_resumes_without_redoing_work(synth_run, synth_params):
    from hrm.synth import synthesize

    result, out = synth_run
    before = out.read_bytes()
    state_before = json.loads(out.with_name(out.name + ".state.json").read_text())
    again = synthesize(synth_params, out)
    assert [(e.kept, e.tried, e.stopped_by) for e in again.envs] == [
        (e.kept, e.tried, e.stopped_by) for e in result.envs]
    assert out.read_bytes() == before
    assert json.loads(out.with_name(out.name + ".state.json").read_text()) == state_before


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: setattr(p.synth, "seed", 99), "seed: was 0, now 99"),
    (lambda p: setattr(p.synth, "envs", [SCHEMA, TENACITY]), "synth.envs: was"),
    (lambda p: setattr(p.synth, "envs", [TENACITY]), "synth.envs: was"),
    (lambda p: setattr(p.synth, "kinds", ["op_swap"]), "synth.kinds: was"),
])
def test_resume_refuses_other_settings(synth_run, synth_params, tmp_path, change, message):
    from hrm.synth import synthesize

    _, out = synth_run
    copy = tmp_path / out.name
    for suffix in ("", ".state.json", ".baseline.json"):
        shutil.copy(out.with_name(out.name + suffix), copy.with_name(copy.name + suffix))
    other = synth_params.model_copy(deep=True)
    change(other)
    with pytest.raises(InputError, match=re.escape(message)) as err:
        synthesize(other, copy)
    assert "instances.jsonl.state.json" in str(err.value)


def test_resume_refuses_a_changed_environment(synth_run, synth_params, tmp_path):
    """An environment rebuilt from another spec or interpreter has another fingerprint."""
    from hrm.synth import synthesize

    _, out = synth_run
    copy = tmp_path / out.name
    shutil.copy(out, copy)
    state = json.loads(out.with_name(out.name + ".state.json").read_text())
    state["fingerprints"][SCHEMA] = "0123456789abcdef"
    copy.with_name(copy.name + ".state.json").write_text(json.dumps(state))
    with pytest.raises(InputError, match=f"fingerprint of {SCHEMA}: was 0123456789abcdef"):
        synthesize(synth_params, copy)


def test_refuses_foreign_output(tmp_path, synth_params):
    from hrm.synth import synthesize

    foreign = tmp_path / "instances.jsonl"
    foreign.write_text(json.dumps({"instance_id": "x"}) + "\n")
    with pytest.raises(InputError, match="not a synth output"):
        synthesize(synth_params, foreign)


def test_synthetic_set_passes_data_validation(synth_run, synth_params, tmp_path):
    from hrm.data.validate import validate

    _, out = synth_run
    result = validate(out, tmp_path / "validated", synth_params.data)
    assert result.rows == 4 and result.quarantined == 0 and result.passed, result.summary()


def _key(out):
    return [(r.instance_id, r.patch, r.FAIL_TO_PASS) for r in read_instances(out)]


def test_interrupted_runs_continue_per_environment(synth_run, synth_params, tmp_path):
    """Stopped after one instance per environment, or in the middle of the second environment:
    resuming gives the uninterrupted output, and a finished environment is not searched again."""
    from hrm.synth import synthesize

    _, reference = synth_run
    expected = _key(reference)
    ref_state = json.loads(reference.with_name(reference.name + ".state.json").read_text())

    short = synth_params.model_copy(deep=True)
    short.synth.max_instances = 1
    half = tmp_path / "half" / "instances.jsonl"
    first = synthesize(short, half)  # "interrupted" after one instance per environment
    assert [(e.kept, e.stopped_by) for e in first.envs] == [(1, "max_instances")] * 2
    half_state = json.loads(half.with_name(half.name + ".state.json").read_text())

    # Stopped in the second environment: the first is done (as in the reference), the second
    # has committed its candidates up to its first instance.
    mid = tmp_path / "mid" / "instances.jsonl"
    mid.parent.mkdir()
    ref_rows = reference.read_text().splitlines(keepends=True)
    half_rows = half.read_text().splitlines(keepends=True)
    mid.write_text("".join(ref_rows[:2] + half_rows[1:]))
    state = dict(ref_state, progress={TENACITY: ref_state["progress"][TENACITY],
                                      SCHEMA: half_state["progress"][SCHEMA]})
    mid.with_name(mid.name + ".state.json").write_text(json.dumps(state))
    resumed_mid = synthesize(synth_params, mid)
    assert _key(mid) == expected
    after = json.loads(mid.with_name(mid.name + ".state.json").read_text())
    assert after["progress"][TENACITY] == ref_state["progress"][TENACITY]  # not redone
    assert resumed_mid.envs[0].baseline_passed is None  # not even its baseline was recorded
    assert after["progress"][SCHEMA]["tried"] == ref_state["progress"][SCHEMA]["tried"]

    # Raised target after one instance each: the first environment's second instance is found
    # after the second environment's first; the file is regrouped in synth.envs order.
    resumed = synthesize(synth_params, half)
    assert [e.kept for e in resumed.envs] == [2, 2]
    assert _key(half) == expected


_GENERATE = """
import sys
from hrm.config import load_params
from hrm.synth import synthesize
params = load_params(sys.argv[1], "tiny")
params.envs.cache_dir = sys.argv[2]
params.synth.envs = [sys.argv[3]]
params.synth.max_instances = 2
params.synth.max_pass_to_pass = 5
synthesize(params, sys.argv[4])
"""


def test_same_seed_same_bytes_in_separate_processes(synth_params, repo_root, tmp_path):
    """Two fresh processes (each records its own baseline) write byte-identical output."""
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name / "instances.jsonl"
        out.parent.mkdir()
        proc = subprocess.run(
            [sys.executable, "-c", _GENERATE, str(repo_root / "params.yaml"),
             synth_params.envs.cache_dir, SCHEMA, str(out)],
            capture_output=True, text=True, cwd=repo_root, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(out.read_bytes())
    assert len(outs[0].splitlines()) == 2
    assert outs[0] == outs[1]
