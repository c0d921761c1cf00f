"""The generator's instances are valid SWE-smith instances, checked independently of its own
bookkeeping: they parse, apply to the pristine tree, FAIL_TO_PASS fails with the bug and
passes without, and the problem statement shows no diff."""

from __future__ import annotations

import json

import pytest

from hrm.data.instance import parse_instance_id, read_instances
from hrm.errors import InputError


def test_instances_are_valid_and_reproducible(synth_run, synth_params):
    from hrm.envs import get_environment

    result, out = synth_run
    assert result.kept == 2 and result.stopped_by == "max_instances", result
    assert result.tried >= result.kept and result.baseline_passed > 100
    rows = read_instances(out)
    assert len(rows) == 2 and len({r.instance_id for r in rows}) == 2
    env = get_environment(synth_params.synth.env, synth_params.envs)
    for inst in rows:
        pid = parse_instance_id(inst.instance_id)
        assert pid.repo == inst.repo == synth_params.synth.env
        assert pid.bug_type.startswith("func_pm_") and inst.image_name == ""
        assert inst.FAIL_TO_PASS and not set(inst.FAIL_TO_PASS) & set(inst.PASS_TO_PASS)
        assert len(inst.PASS_TO_PASS) <= synth_params.synth.max_pass_to_pass
        patch_lines = {ln[1:].strip() for ln in inst.patch.splitlines()
                       if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
                       and len(ln[1:].strip()) >= 6}
        for line in inst.problem_statement.splitlines():
            assert not line.startswith(("+", "-", "@@", "diff --git")), line
            assert not any(p in line for p in patch_lines), line
        with env.working_copy() as tree:
            env.apply_patch(tree, inst.patch)
            bug = env.run_tests(tree, inst.FAIL_TO_PASS)
            assert not bug.passed and all(r.outcome != "passed" for r in bug.results.values())
            env.apply_patch(tree, inst.patch, reverse=True)
            assert env.run_tests(tree, inst.FAIL_TO_PASS + inst.PASS_TO_PASS).passed


def test_rerun_resumes_without_redoing_work(synth_run, synth_params):
    from hrm.synth import synthesize

    result, out = synth_run
    before = out.read_text()
    again = synthesize(synth_params, out)
    assert again.kept == result.kept and again.tried == result.tried
    assert out.read_text() == before
    other = synth_params.model_copy(deep=True)
    other.synth.seed = 99
    with pytest.raises(InputError, match="seed=0"):
        synthesize(other, out)


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
    assert result.rows == 2 and result.quarantined == 0 and result.passed, result.summary()


def test_same_seed_same_instances_and_an_interrupted_run_continues(synth_run, synth_params, tmp_path):
    """A fresh run with the seed of `synth_run` keeps the same bugs; stopping after one and
    resuming with the full target gives exactly the uninterrupted output."""
    from hrm.synth import synthesize

    _, reference = synth_run
    expected = [(r.instance_id, r.patch, r.FAIL_TO_PASS) for r in read_instances(reference)]
    short = synth_params.model_copy(deep=True)
    short.synth.max_instances = 1
    out = tmp_path / "instances.jsonl"
    first = synthesize(short, out)  # "interrupted" after one kept instance
    assert first.kept == 1 and first.stopped_by == "max_instances"
    resumed = synthesize(synth_params, out)
    assert resumed.kept == 2 and resumed.tried >= first.tried
    got = [(r.instance_id, r.patch, r.FAIL_TO_PASS) for r in read_instances(out)]
    assert got == expected
