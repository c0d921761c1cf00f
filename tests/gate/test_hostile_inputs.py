"""The gate against metrics and decisions it must not believe: impossible values, duplicate keys,
unreadable numbers and bytes, metrics of another checkpoint, forged decisions. Each one is a
clear error (exit 2 from the CLI) and nothing is ever promoted.

Every case starts from inputs that DO promote under the lenient criteria (so a refusal is the
input's doing, not the criteria's)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hrm.errors import HrmError, InputError
from hrm.gate.decide import decide, read_gate_json
from hrm.gate.registry import RegistryError, champion, promote

BIG_401 = "9" * 401
BIG_5000 = "9" * 5000


def _val_text(synth, **changes) -> str:
    return json.dumps({**synth.MID_TRAINING_VAL, **changes})


# (case, metrics.json text builder, error the gate must give)
MALFORMED = [
    ("negative loss", lambda s, sha: _val_text(s, loss=-5.0, checkpoint_sha256=sha),
     r"impossible metric: loss = -5.0 is below its lowest possible value 0"),
    ("accuracy above 1", lambda s, sha: _val_text(s, token_accuracy_all=7.5, checkpoint_sha256=sha),
     r"token_accuracy_all = 7.5 is above its highest possible value 1"),
    ("compile rate 42", lambda s, sha: _val_text(s, code_compilation_success=42, checkpoint_sha256=sha),
     r"code_compilation_success = 42.0 is above"),
    ("duplicate key hides a NaN", lambda s, sha: '{"loss": NaN, ' + _val_text(s, checkpoint_sha256=sha)[1:],
     r"key 'loss' appears twice"),
    ("401-digit integer", lambda s, sha: _val_text(s, checkpoint_sha256=sha).replace(
        '"loss": 0.62', f'"loss": {BIG_401}'), r"metric 'loss': 9{20}\.\.\. does not fit a float"),
    ("5000-digit integer", lambda s, sha: _val_text(s, checkpoint_sha256=sha).replace(
        '"loss": 0.62', f'"loss": {BIG_5000}'), r"a number in it cannot be read"),
    ("float overflow", lambda s, sha: _val_text(s, checkpoint_sha256=sha).replace(
        '"loss": 0.62', '"loss": 1e999'), r"does not fit a float"),
    ("interval above 1", lambda s, sha: _val_text(s, resolved_rate_ci95=[0.5, 1.7], checkpoint_sha256=sha),
     r"impossible interval resolved_rate_ci95"),
    ("interval upside down", lambda s, sha: _val_text(s, resolved_rate_ci95=[0.3, 0.1], checkpoint_sha256=sha),
     r"low above high"),
    ("impossible baseline", lambda s, sha: _val_text(
        s, baselines={"copy": {"exact_accuracy": -1.0}}, checkpoint_sha256=sha),
     r"impossible baseline: copy: exact_accuracy = -1.0"),
    ("bad checkpoint hash", lambda s, sha: _val_text(s, checkpoint_sha256="xyz"),
     r"checkpoint_sha256 must be 64 hex digits"),
    ("a string metric", lambda s, sha: _val_text(s, loss="0.1", checkpoint_sha256=sha),
     r"metric 'loss' must be a number or null"),
]


@pytest.mark.parametrize("case,build,error", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_metrics_are_refused_with_the_reason(case, build, error, make_params, run_dirs,
                                                       synth):
    params = make_params(synth.LENIENT)
    assert decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir).verdict == "PROMOTE"
    sha = json.loads((run_dirs.eval_dir / "val" / "metrics.json").read_text())["checkpoint_sha256"]
    path = run_dirs.eval_dir / "val" / "metrics.json"
    path.write_text(build(synth, sha))
    with pytest.raises(InputError, match=error) as info:
        decide(params.gate, run_dirs.eval_dir, run_dirs.root / "g2")
    assert str(path) in str(info.value)


def test_non_utf8_metrics_are_refused(make_params, run_dirs, synth):
    params = make_params(synth.LENIENT)
    path = run_dirs.eval_dir / "val" / "metrics.json"
    path.write_bytes(path.read_bytes().replace(b'"loss"', b'"lo\xffss"'))
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte \d+"):
        decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)


def test_a_nan_loss_flags_and_never_promotes(make_params, run_dirs, synth):
    params = make_params(synth.LENIENT)
    path = run_dirs.eval_dir / "val" / "metrics.json"
    path.write_text(path.read_text().replace('"loss": 0.62', '"loss": NaN'))
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    assert result.verdict == "FLAG"
    assert next(c for c in result.criteria if c.metric == "loss").status == "non_finite"


def test_the_cli_exits_2_with_one_line_naming_the_file(make_params, run_dirs, synth, tmp_path):
    import yaml

    params = make_params(synth.LENIENT)
    params_file = tmp_path / "p.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    path = run_dirs.eval_dir / "val" / "metrics.json"
    path.write_text(path.read_text().replace('"loss": 0.62', '"loss": -5.0'))
    done = subprocess.run(
        [sys.executable, "-m", "hrm", "gate", "--eval", str(run_dirs.eval_dir), "--train",
         str(run_dirs.train_dir), "--out", str(run_dirs.out_dir), "--checkpoint",
         str(run_dirs.checkpoint), "--tokenizer", str(run_dirs.tokenizer), "--params",
         str(params_file)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {path}: impossible metric")
    assert "Traceback" not in done.stderr


def _forge(run_dirs, synth, make_params, edit):
    """A PROMOTE decision written by `decide`, then edited by `edit(raw)`, read back."""
    params = make_params(synth.LENIENT)
    decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    path = run_dirs.out_dir / "gate.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    return params, read_gate_json(path)


def _fail_all(raw):
    for row in raw["criteria"]:
        row.update(status="fail", value=1e6 if row["op"] in ("<", "<=") else -1e6)


FORGED = [
    ("no criteria at all", lambda raw: raw.update(criteria=[]), r"it has no criteria"),
    ("its only criterion failed",
     lambda raw: raw.update(criteria=[{**raw["criteria"][0], "status": "fail", "value": 9.0}]),
     r"verdict PROMOTE does not follow from its criteria \(not all of them pass\)"),
    ("a failing value marked pass",
     lambda raw: raw["criteria"][0].update(value=9.0), r"val/loss claims to pass with value 9\.0"),
    ("a primary interval below copying marked pass",
     lambda raw: raw["primary"].update(ci95=[0.0, 0.3], baseline_copy=0.1),
     r"primary val/resolved_rate claims to pass"),
    ("every criterion failing", _fail_all, r"does not follow"),
    ("another checkpoint", lambda raw: raw.update(checkpoint_sha256="0" * 64),
     r"metrics were measured on checkpoint 0{16}"),
    ("no checkpoint named", lambda raw: raw.update(checkpoint_sha256=None),
     r"do not name the checkpoint"),
]


@pytest.mark.parametrize("case,edit,error", FORGED, ids=[f[0] for f in FORGED])
def test_a_forged_decision_never_promotes(case, edit, error, make_params, run_dirs, synth):
    from mlflow import MlflowClient

    from hrm.tracking import configure

    params, forged = _forge(run_dirs, synth, make_params, edit)
    assert forged.verdict == "PROMOTE"
    with pytest.raises(RegistryError, match=error):
        promote(params, forged, run_dirs.checkpoint, run_dirs.tokenizer)
    configure(params.tracking)
    client = MlflowClient()
    assert champion(client, "hrm-swe", "champion") is None
    assert client.search_model_versions("name='hrm-swe'") == []


@pytest.mark.parametrize("text,error", [
    ('{"verdict": "MAYBE", "criteria": []}', r"verdict must be PROMOTE or FLAG"),
    ('{"verdict": "PROMOTE"}', r"not a gate decision"),
    ('[1, 2]', r"not a gate decision"),
    ('{"verdict": "PROMOTE", "verdict": "FLAG", "criteria": []}', r"key 'verdict' appears twice"),
])
def test_unreadable_decisions_are_input_errors(text, error, tmp_path):
    path = tmp_path / "gate.json"
    path.write_text(text)
    with pytest.raises(HrmError, match=error):
        read_gate_json(path)


def test_report_only_splits_of_another_checkpoint_are_left_out(make_params, run_dirs, synth):
    """A train evaluation left from an earlier model must not feed the report's rules."""
    params = make_params(synth.LENIENT)
    path = run_dirs.eval_dir / "train" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "checkpoint_sha256": "1" * 64}))
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir, extra_splits=["train"])
    assert "train" not in result.metrics and "val" in result.metrics
    assert "measured on checkpoint 1111111111111111" in result.left_out["train"]
    written = json.loads((run_dirs.out_dir / "gate.json").read_text())
    assert set(written["left_out"]) == {"train"}
    from hrm.gate.summary import summary_lines

    lines = summary_lines(run_dirs.out_dir, run_dirs.eval_dir)
    assert any(line.startswith("  left out: train/metrics.json") for line in lines)
    assert not any(line.startswith("train (") for line in lines)
    # the same checkpoint's train metrics are kept
    synth.stamp_checkpoint(run_dirs.eval_dir, run_dirs.checkpoint)
    kept = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir, extra_splits=["train"])
    assert "train" in kept.metrics and kept.left_out == {}
