"""`hrm gate summary`: the lines `make run` ends with, every repair number beside copying."""

from __future__ import annotations

import json

import pytest

from hrm.errors import InputError
from hrm.gate.decide import decide
from hrm.gate.summary import summary_lines


def test_summary_shows_verdict_primary_and_each_split_against_baselines(make_params, run_dirs):
    params = make_params()  # the plan's criteria: the mid-training metrics FLAG
    (run_dirs.eval_dir / "val" / "metrics.json").write_text(json.dumps(
        {**json.loads((run_dirs.eval_dir / "val" / "metrics.json").read_text()), "rows": 50.0}))
    decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    lines = summary_lines(run_dirs.out_dir, run_dirs.eval_dir)
    assert lines[0].startswith("gate: FLAG (") and str(run_dirs.out_dir / "report.md") in lines[0]
    assert str(run_dirs.out_dir / "report.html") in lines[0] and "`dvc plots show`" in lines[0]
    assert "primary resolved_rate (val): 0.200 [0.080, 0.320] vs copy 0.000, unigram 0.040: met" in lines
    assert any(line.startswith("  failing: val/") for line in lines)
    val = next(line for line in lines if line.startswith("val (50 rows): "))
    # MID_TRAINING_VAL: exact 0.05 against copy 0 and unigram 0.02; tokens 0.71 against copy 0.9
    assert "exact 0.050 (copy 0.000, unigram 0.020)" in val
    assert "token acc 0.710 (copy 0.900, unigram 0.600)" in val
    assert "resolved 0.200 (copy 0.000, unigram 0.040)" in val


def test_summary_of_a_run_without_gate_says_what_to_run(tmp_path):
    with pytest.raises(InputError, match="run `dvc repro`"):
        summary_lines(tmp_path / "gate", tmp_path / "eval")
