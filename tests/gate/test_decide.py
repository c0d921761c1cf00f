"""The gate decision: criteria against metrics, gate.json, and input/config errors."""

from __future__ import annotations

import json

import pytest
import yaml

from hrm.config import ConfigError, GateConfig, parse_params
from hrm.errors import InputError
from hrm.gate.decide import decide, read_gate_json
from hrm.gate.inputs import load_history


def test_lenient_criteria_promote_and_gate_json_is_strict(make_params, run_dirs, synth):
    params = make_params(synth.LENIENT)
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    assert result.verdict == "PROMOTE"
    raw = json.loads((run_dirs.out_dir / "gate.json").read_text())
    assert raw["verdict"] == "PROMOTE" and raw["promote"] is True
    assert raw["counts"]["passed"] == raw["counts"]["total"] == 2
    assert [r["value"] for r in raw["criteria"]] == [0.62, 0.71]
    assert read_gate_json(run_dirs.out_dir / "gate.json").verdict == "PROMOTE"


def test_default_criteria_flag_with_value_threshold_and_gap(make_params, run_dirs):
    params = make_params()  # the plan's six criteria
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    assert result.verdict == "FLAG"
    failing = {c.metric: c for c in result.failing}
    # compilation 0.55 > 0.5 passes; the other five fail
    assert set(failing) == {"loss", "code_tiered_accuracy", "token_accuracy_all",
                            "swe_search_convergence_rate", "reverse_learning_integration"}
    assert failing["loss"].gap == pytest.approx(0.32)
    assert failing["code_tiered_accuracy"].gap == pytest.approx(0.68)
    raw = json.loads((run_dirs.out_dir / "gate.json").read_text())
    assert raw["verdict"] == "FLAG" and raw["counts"] == {
        "total": 6, "passed": 1, "failed": 5, "informative": 5, "status_pass": 1, "status_fail": 5,
        "status_missing": 0, "status_null": 0, "status_non_finite": 0,
        "status_not_measured": 0}
    assert any(line.startswith("val/loss < 0.3: 0.62 is not < 0.3") for line in raw["failing"])


def test_every_criterion_carries_the_baselines_and_whether_copying_meets_it(make_params, run_dirs, synth):
    params = make_params(synth.LENIENT)
    raw = json.loads(json.dumps(decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir).to_json()))
    rows = {r["metric"]: r for r in raw["criteria"]}
    assert (rows["loss"]["baseline_copy"], rows["loss"]["informative"]) == (None, True)
    tok = rows["token_accuracy_all"]
    assert (tok["baseline_copy"], tok["baseline_unigram"], tok["informative"]) == (0.9, 0.6, False)
    assert "copying the buggy code passes too" in tok["note"]
    assert raw["counts"]["informative"] == 1
    assert raw["primary"] == {"metric": "resolved_rate", "split": "val", "value": 0.2, "ci95": [0.08, 0.32],
                              "baseline_copy": 0.0, "baseline_untrained": None, "passed": True,
                              "baselines": {"copy": 0.0, "unigram": 0.04}, "paired": {},
                              "note": "95% interval [0.08, 0.32]; shown above copying (0), "
                                      "the unigram guess (0.04, unpaired)"}
    assert read_gate_json(run_dirs.out_dir / "gate.json").primary.ci95 == (0.08, 0.32)


def _copy_as_candidate(eval_dir, synth, tests_ran: bool):
    """metrics.json of a model that copies the buggy code: its values ARE the copy baseline's,
    and the primary metric's interval is [0, 0]."""
    copy = dict(synth.MID_TRAINING_VAL["baselines"]["copy"])
    metrics = {**copy, "loss": 0.2, "swe_search_convergence_rate": 0.0, "reverse_learning_integration": 0.7,
               "exact_accuracy_ci95": [0.0, 0.0], "baselines": synth.MID_TRAINING_VAL["baselines"]}
    if tests_ran:
        metrics["resolved_rate_ci95"] = [0.0, 0.0]
    else:
        metrics["resolved_rate"] = None
    synth.write_metrics(eval_dir, "val", metrics)


@pytest.mark.parametrize("tests_ran", [True, False])
def test_the_copy_baseline_as_candidate_never_promotes(make_params, run_dirs, synth, tests_ran):
    _copy_as_candidate(run_dirs.eval_dir, synth, tests_ran)
    metric = "resolved_rate" if tests_ran else "exact_accuracy"
    # The plan's criteria: flagged with reasons.
    default = decide(make_params().gate, run_dirs.eval_dir, run_dirs.out_dir)
    assert default.verdict == "FLAG" and default.primary.metric == metric and not default.primary.passed
    assert any(line.startswith(f"primary val/{metric}: 95% interval [0, 0]; not shown above copying (0)")
               for line in default.to_json()["failing"])
    # Criteria that only list what copying meets: every one passes, and still FLAG.
    copy_met = [{"metric": "token_accuracy_all", "op": ">", "threshold": 0.8},
                {"metric": "loss", "op": "<", "threshold": 0.3}]
    met = decide(make_params(copy_met).gate, run_dirs.eval_dir, run_dirs.out_dir)
    assert all(c.passed for c in met.criteria) and met.verdict == "FLAG"
    assert [c.informative for c in met.criteria] == [False, True]
    # With the primary rule off, the one informative criterion (loss: copying has none) would
    # promote; listing only criteria that copying meets does not.
    off = make_params(copy_met[:1], primary_metric=None)
    only_copy = decide(off.gate, run_dirs.eval_dir, run_dirs.out_dir)
    assert only_copy.verdict == "FLAG" and "met by copying the buggy code too" in only_copy.evidence


def test_primary_interval_must_lie_above_copy(make_params, run_dirs, synth):
    params = make_params(synth.LENIENT)
    # the fixture's unigram guess resolves 0.04 (no paired interval: its value is the bar)
    for low, verdict in [(0.05, "PROMOTE"), (0.03, "FLAG"), (0.0, "FLAG")]:
        synth.write_metrics(run_dirs.eval_dir, "val", {**synth.MID_TRAINING_VAL, "resolved_rate_ci95": [low, 0.3]})
        assert decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir).verdict == verdict
    del_ci = {k: v for k, v in synth.MID_TRAINING_VAL.items() if k != "resolved_rate_ci95"}
    synth.write_metrics(run_dirs.eval_dir, "val", del_ci)
    missing = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    assert missing.verdict == "FLAG" and missing.primary.note == "no resolved_rate_ci95 in metrics.json: not measured"


def test_primary_interval_must_lie_above_the_untrained_model(make_params, run_dirs, synth):
    """Choosing among the rewrites of the buggy code, an untrained model fixes some rows by
    chance: the interval must clear it too, and a decision claiming otherwise is refused."""
    from hrm.gate.decide import decision_problems

    params = make_params(synth.LENIENT)
    base = synth.MID_TRAINING_VAL
    for untrained, verdict in [(0.05, "PROMOTE"), (0.08, "FLAG"), (0.12, "FLAG")]:
        baselines = {**base["baselines"], "untrained": {"resolved_rate": untrained, "exact_accuracy": 0.0}}
        synth.write_metrics(run_dirs.eval_dir, "val", {**base, "baselines": baselines})
        res = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
        assert (res.verdict, res.primary.baseline_untrained) == (verdict, untrained)
        assert f"the untrained model ({untrained:.3g}, unpaired)" in res.primary.note
        assert decision_problems(res) == []
    forged = read_gate_json(run_dirs.out_dir / "gate.json")
    forged.primary = type(forged.primary)(**{**forged.primary.__dict__, "passed": True})
    forged.verdict = "PROMOTE"
    assert any("untrained model 0.12" in p for p in decision_problems(forged))


def test_primary_rule_tests_the_rows_where_the_model_and_each_baseline_differ(make_params, run_dirs, synth):
    """Where the evaluation counted the rows only the model gets and only a baseline gets, the
    rule asks McNemar's exact test on them (one-sided p <= 0.025), for each baseline: 8 rows to
    0 clears (p = 0.0039), 9 to 2 does not (p = 0.033, though a percentile bootstrap interval
    of that difference lies above 0), and a baseline above the model's own lower bound does not
    stop a PROMOTE when the paired test clears it."""
    from hrm.gate.decide import decision_problems

    params = make_params(synth.LENIENT)
    base = synth.MID_TRAINING_VAL  # resolved 0.2 [0.08, 0.32]
    baselines = {**base["baselines"], "naturalness": {"resolved_rate": 0.05, "exact_accuracy": 0.0},
                 "untrained": {"resolved_rate": 0.12, "exact_accuracy": 0.0}}
    for ngram, untrained, verdict in [((8, 0), (10, 2), "PROMOTE"),
                                      ((9, 2), (10, 2), "FLAG"),
                                      ((8, 0), (6, 4), "FLAG")]:
        paired = {name: {"resolved_rate": {"difference": (a - b) / 50, "ci95": [0.01, 0.3],
                                           "model_only": a, "baseline_only": b}}
                  for name, (a, b) in (("naturalness", ngram), ("untrained", untrained))}
        synth.write_metrics(run_dirs.eval_dir, "val", {**base, "baselines": baselines, "paired": paired})
        res = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
        assert res.verdict == verdict, res.primary.note
        assert res.primary.paired["naturalness"]["model_only"] == ngram[0]
        assert decision_problems(read_gate_json(run_dirs.out_dir / "gate.json")) == []
    assert "the untrained model (0.12; 6 rows only the model gets, 4 only the baseline, exact p = 0.38" in res.primary.note
    assert "shown above copying (0)" in res.primary.note
    forged = read_gate_json(run_dirs.out_dir / "gate.json")
    forged.primary = type(forged.primary)(**{**forged.primary.__dict__, "passed": True})
    forged.verdict = "PROMOTE"
    assert any("paired counts" in p for p in decision_problems(forged))


def test_a_p_value_that_is_not_the_counts_exact_test_is_refused(make_params, run_dirs, synth):
    params = make_params(synth.LENIENT)
    paired = {"untrained": {"resolved_rate": {"difference": 0.1, "ci95": [0.0, 0.2], "model_only": 9,
                                              "baseline_only": 2, "p_value": 0.01}}}
    synth.write_metrics(run_dirs.eval_dir, "val", {**synth.MID_TRAINING_VAL, "paired": paired})
    with pytest.raises(InputError, match=r"paired\.untrained\.resolved_rate\.p_value 0\.01 is not the exact test's 0\.0327"):
        decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)


def test_a_decision_without_the_paired_fields_reads_as_before(make_params, run_dirs, synth):
    """gate.json files written before the paired rule (no `baselines`, no `paired`) read back
    and re-derive with the unpaired rule; a malformed `paired` is not a decision."""
    import json as _json

    from hrm.gate.decide import decision_problems

    params = make_params(synth.LENIENT)
    decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    path = run_dirs.out_dir / "gate.json"
    raw = _json.loads(path.read_text())
    for key in ("baselines", "paired"):
        raw["primary"].pop(key)
    path.write_text(_json.dumps(raw))
    old = read_gate_json(path)
    assert old.primary.passed and decision_problems(old) == []
    raw["primary"]["paired"] = {"untrained": [0.1, 0.2]}
    path.write_text(_json.dumps(raw))
    with pytest.raises(InputError, match="primary.paired must map baselines"):
        read_gate_json(path)


@pytest.mark.parametrize("ci, counts", [([0.1, -0.1], (3, 1)), ([-1.5, 0.2], (3, 1)), ([0.1, "x"], (3, 1)),
                                       (None, (3, 1)), ([0.0, 0.2], (-1, 2)), ([0.0, 0.2], (2.5, 1))])
def test_an_impossible_paired_entry_is_an_error_naming_it(make_params, run_dirs, synth, ci, counts):
    params = make_params(synth.LENIENT)
    paired = {"untrained": {"resolved_rate": {"difference": 0.1, "ci95": ci, "model_only": counts[0],
                                              "baseline_only": counts[1]}}}
    synth.write_metrics(run_dirs.eval_dir, "val", {**synth.MID_TRAINING_VAL, "paired": paired})
    with pytest.raises(InputError, match=r"paired\.untrained\.resolved_rate(\.ci95|: model_only)"):
        decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)


def test_missing_null_and_nan_metrics_flag_and_say_so(make_params, run_dirs):
    (run_dirs.eval_dir / "val" / "metrics.json").write_text(
        '{"loss": NaN, "token_accuracy_all": null, "code_compilation_success": 0.9}')
    params = make_params([
        {"metric": "loss", "op": "<", "threshold": 5.0},
        {"metric": "token_accuracy_all", "op": ">", "threshold": 0.0},
        {"metric": "code_compilation_success", "op": ">", "threshold": 0.5},
        {"metric": "resolved_rate", "op": ">=", "threshold": 0.0},
    ])
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    assert result.verdict == "FLAG"
    assert [c.status for c in result.criteria] == ["non_finite", "null", "pass", "missing"]
    raw = json.loads((run_dirs.out_dir / "gate.json").read_text())  # strict JSON: NaN written as null
    assert raw["criteria"][0]["value"] is None and raw["criteria"][0]["status"] == "non_finite"
    assert "not in val/metrics.json" in raw["criteria"][3]["note"]


def test_unknown_metric_in_criteria_is_a_config_error_naming_the_key(repo_root):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["gate"]["criteria"][2]["metric"] = "tiered_acc"
    with pytest.raises(ConfigError, match=r"gate\.criteria\.2.*unknown metric 'tiered_acc'"):
        parse_params(raw, "cpu")
    with pytest.raises(ValueError, match="guard_metric"):
        GateConfig(criteria=[{"metric": "loss", "op": "<", "threshold": 1}], guard_metric="exact_accuracy")


def test_bad_metrics_file_names_the_file(make_params, run_dirs, synth):
    params = make_params(synth.LENIENT)
    path = run_dirs.eval_dir / "val" / "metrics.json"
    path.write_text('{"loss": "low"}')
    with pytest.raises(InputError, match=r"val/metrics\.json: metric 'loss' must be a number"):
        decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    path.write_text('{"loss": 0.1,\n')
    with pytest.raises(InputError, match=r"metrics\.json:2: not valid JSON"):
        decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    path.unlink()
    with pytest.raises(InputError, match=r"val/metrics\.json: metrics for split 'val' not found"):
        decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)


def test_empty_criteria_is_refused(make_params, run_dirs):
    params = make_params([])
    with pytest.raises(ValueError, match="criteria is empty"):
        decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)


def test_history_is_averaged_per_epoch_and_checked(tmp_path, synth):
    synth.write_history(tmp_path, [("a", 3), ("b", 2)], rows_per_epoch=4)
    history = load_history(tmp_path, ["a", "b"])
    assert [p.epoch for p in history.points] == [1, 2, 3, 4, 5]
    assert history.phase_starts() == [("a", 1), ("b", 4)]
    # phase b restarting its epochs at 1 breaks the global-epoch contract
    synth.write_history(tmp_path / "bad", [("a", 3)])
    synth.write_history(tmp_path / "bad2", [("b", 2)])
    (tmp_path / "bad" / "b").mkdir()
    (tmp_path / "bad2" / "b" / "history.csv").rename(tmp_path / "bad" / "b" / "history.csv")
    with pytest.raises(InputError, match=r"b/history\.csv: epochs must be global"):
        load_history(tmp_path / "bad", ["a", "b"])
    bad = tmp_path / "c" / "history.csv"
    bad.parent.mkdir()
    bad.write_text("phase,epoch,step,loss\nc,1,1,0.5\n")
    with pytest.raises(InputError, match=r"c/history\.csv:1: missing columns \['lm_loss', 'token_accuracy'\]"):
        load_history(tmp_path, ["c"])
    bad.write_text("phase,epoch,step,loss,lm_loss,token_accuracy\nc,1,1,oops,0.4,0.5\n")
    with pytest.raises(InputError, match=r"c/history\.csv:2: column 'loss' is not a number"):
        load_history(tmp_path, ["c"])


def test_split_metrics_used_by_criteria_on_train(make_params, run_dirs, synth):
    synth.write_metrics(run_dirs.eval_dir, "train", {**synth.MID_TRAINING_VAL, "loss": 0.2})
    params = make_params([{"metric": "loss", "op": "<", "threshold": 0.3, "split": "train"}])
    assert decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir).verdict == "PROMOTE"


def test_a_metric_the_evaluation_did_not_measure_reads_not_measured_and_never_passes(make_params, run_dirs, synth):
    """No reverse-learning control trained: the criterion says so and still fails."""
    from hrm.gate.report import build_report, render_markdown

    reason = "no control model was trained (train.reverse_control: false)"
    synth.write_metrics(run_dirs.eval_dir, "val", {
        **synth.MID_TRAINING_VAL, "reverse_learning_integration": None,
        "not_measured": {"reverse_learning_integration": reason}})
    params = make_params([{"metric": "reverse_learning_integration", "op": ">", "threshold": 0.0,
                           "split": "val"}])
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    (row,) = result.criteria
    assert (row.status, row.passed, row.note) == ("not_measured", False, f"not measured: {reason}")
    assert result.verdict == "FLAG"
    raw = json.loads((run_dirs.out_dir / "gate.json").read_text())
    assert raw["counts"]["status_not_measured"] == 1 and raw["counts"]["status_null"] == 0
    report = render_markdown(build_report(params.gate, result, load_history(run_dirs.train_dir, [
        "foundation", "optimisation", "refinement"])), {})
    assert "| `val/reverse_learning_integration` | not measured |" in report
    assert f"## Reverse-learning ablation (`val`)\n\nnot measured: {reason}." in report
    # A null the evaluation gives no reason for stays a plain null.
    synth.write_metrics(run_dirs.eval_dir, "val", {**synth.MID_TRAINING_VAL, "reverse_learning_integration": None})
    assert decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir).criteria[0].status == "null"


def test_the_paired_ablation_shows_its_rows_and_sign_test(make_params, run_dirs, synth):
    from hrm.gate.report import build_report, render_markdown

    synth.write_metrics(run_dirs.eval_dir, "val", {
        **synth.MID_TRAINING_VAL, "reverse_learning_integration": 0.7, "reverse_learning_p_value": 0.0066,
        "reverse_learning_rows_lower": 35, "reverse_learning_rows_higher": 15,
        "reverse_learning_control_loss": 0.71})
    params = make_params([{"metric": "reverse_learning_integration", "op": ">", "threshold": 0.6,
                           "split": "val"}])
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    (row,) = result.criteria
    assert row.passed
    assert row.note == ("passes; against the control model (feedback path off, same data, seed and "
                        "epochs): lower loss on 35 rows, higher on 15, sign test p = 0.0066")
    report = render_markdown(build_report(params.gate, result, load_history(run_dirs.train_dir, [
        "foundation", "optimisation", "refinement"])), {})
    section = report.split("## Reverse-learning ablation (`val`)")[1].split("\n## ")[0]
    assert "lower loss on 35 rows and the higher on 15" in section
    assert "**0.7** (0.5 = no effect), two-sided sign test **p = 0.0066**" in section
    assert "Loss: model 0.62, control 0.71." in section


def test_a_malformed_not_measured_is_an_input_error(make_params, run_dirs, synth):
    synth.write_metrics(run_dirs.eval_dir, "val", {**synth.MID_TRAINING_VAL, "not_measured": ["x"]})
    with pytest.raises(InputError, match="not_measured must map metric names to reasons"):
        decide(make_params().gate, run_dirs.eval_dir, run_dirs.out_dir)
