"""`hrm train` then `hrm evaluate` through the CLI on the real sample: a real (briefly trained)
checkpoint, the tenacity execution tier on one val row, MLflow logging, and the three outputs
checked against each other; the refusals (another tokenizer, a corrupt checkpoint, no CUDA),
a model without the feedback path, and `hrm transfer`."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hrm.eval.metric_names import METRIC_NAMES

from .conftest import EVAL_SEQ_LEN, build_real

ENV_ROWS = 1
"""Val rows given to the execution tier (the others are reported as having no environment)."""


def _invoke(args: list[str]):
    from hrm.cli import app

    result = CliRunner().invoke(app, args, catch_exceptions=True)
    if result.exit_code != 0:
        raise AssertionError(f"hrm {args[0]} failed ({result.exit_code}): {result.output[-3000:]}"
                             ) from result.exception
    return result


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, sample_path, repo_root):
    """Build, train (`hrm train`, a phase on the train split) and evaluate (`hrm evaluate`, no
    `--split`: val)."""
    from hrm.config import load_params

    root = tmp_path_factory.mktemp("eval-e2e")
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["profile"] = "tiny"
    tiny = raw["profiles"]["tiny"]
    tiny["sequences"]["seq_len"] = EVAL_SEQ_LEN
    tiny["train"]["checkpoint_every_steps"] = 1  # several checkpoints (the newest is evaluated)
    tiny["eval"]["max_pass_to_pass"] = 1
    raw["sequences"]["held_out_repos"] = []
    raw["data"]["snapshot"] = str(root / "no-snapshot.jsonl")
    raw["envs"]["cache_dir"] = str(repo_root / ".cache" / "hrm-envs")
    raw["envs"]["timeout_s"] = 20.0
    raw["tracking"] = {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                       "artifact_location": str(root / "mlartifacts"), "experiment": "hrm-e2e"}
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(params_path)
    build_real(sample_path, root, params)
    phase = next(p.name for p in params.train.phases if p.data == "train")

    val = [json.loads(line) for line in (root / "seq" / "val.jsonl").read_text().splitlines()]
    chosen = [r["instance_id"] for r in val][:ENV_ROWS]
    with sample_path.open(encoding="utf-8") as src, \
            (root / "instances.jsonl").open("w", encoding="utf-8") as dst:
        for line in src:  # a temporary subset of the sample, never a repository file
            if line.strip() and json.loads(line)["instance_id"] in chosen:
                dst.write(line)

    common = ["--tokenizer", str(root / "tok"), "--sequences", str(root / "seq"),
              "--params", str(params_path)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", raw["tracking"]["tracking_uri"])
        mp.delenv("HRM_PIPELINE_RUN", raising=False)
        mp.chdir(root)
        _invoke(["train", "--phase", phase, "--out", str(root / "train"), "--no-track", *common])
        result = _invoke(["evaluate", "--checkpoint", str(root / "train" / "checkpoints"),
                          "--out", str(root / "eval"), "--instances",
                          str(root / "instances.jsonl"), *common])
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    preds = [json.loads(line) for line in
             (root / "eval" / "predictions.jsonl").read_text().splitlines()]
    return {"root": root, "params": params, "metrics": metrics, "preds": preds, "chosen": chosen,
            "stdout": result.output, "common": common, "val": val, "phase": phase}


@pytest.mark.slow
def test_metrics_json_is_complete_and_consistent(e2e):
    m, preds, val = e2e["metrics"], e2e["preds"], e2e["val"]
    assert "\nval: token_accuracy_all=" in e2e["stdout"]  # --split defaults to val
    assert set(METRIC_NAMES) <= set(m)
    for name in METRIC_NAMES:
        assert m[name] is None or (isinstance(m[name], float) and math.isfinite(m[name])), name
    # no held-out repo here; an all-wrong split leaves one Q class empty
    # ... and the paired reverse-learning ablation, measured only against a control model
    # (`hrm evaluate --control`, tests/train/test_control.py), which this run has not
    paired = {"reverse_learning_integration", "reverse_learning_p_value", "reverse_learning_rows_lower",
              "reverse_learning_rows_higher", "reverse_learning_control_loss"}
    assert paired <= {k for k in METRIC_NAMES if m[k] is None} <= {
        "q_halt_balanced_accuracy", "held_out_repo_exact_accuracy"} | paired
    assert m["not_measured"] == {
        "reverse_learning_integration": "no control model was given (hrm evaluate --control)"}
    assert m["rows"] == len(val) == len(preds) >= 4
    # the tiny model fixes at most a row or two (a swap: one label); its env row is not resolved
    assert m["exact_accuracy"] == pytest.approx(np.mean([p["exact"] for p in preds]))
    assert m["exact_accuracy"] <= 2 / len(val)
    assert m["resolved_rate"] == 0.0
    assert m["resolved_rows_without_env"] == len(val) - ENV_ROWS
    assert m["swe_search_verifier"] == "static+tests"
    assert m["swe_search_rows_static"] == len(val) - ENV_ROWS
    for name in ("exact_accuracy_ci95", "resolved_rate_ci95"):
        low, high = m[name]
        assert low <= m[name.removesuffix("_ci95")] <= high
    copy = m["baselines"]["copy"]
    assert copy["exact_accuracy"] == copy["edit_accuracy"] == copy["resolved_rate"] == 0.0
    assert copy["code_compilation_success"] == 0.0 and copy["code_rows_file_context"] == ENV_ROWS
    assert set(m["baselines"]) == {"copy", "unigram", "untrained", "untrained_alone", "naturalness"}
    # the untrained model without the n-gram model: its own pick, beside a random rewrite's rate
    chance = m["baselines"]["untrained_alone"]["random_rewrite_exact_accuracy"]
    assert isinstance(chance, float)  # its value: tests/eval/test_paired.py
    # abstaining keeps the buggy code: no output, and counted
    assert m["abstained_rows"] == sum(p["abstained"] for p in preds)
    assert all(not p["outputs"] and p["naturalness"] <= 0 for p in preds if p["abstained"])
    assert all(p["naturalness"] > 0 for p in preds if not p["abstained"] and p["naturalness"] is not None)
    alone = m["baselines"]["naturalness"]
    assert alone["abstained_rows"] <= len(val) and 0 <= alone["fix_in_search_candidates"] <= 1
    assert "resolved_after_search" in alone  # its own search ran
    # the ablation: the HRM's own greedy fix, never kept unchanged, scored the same way
    hrm = m["hrm_alone"]
    assert set(hrm) == {"exact_accuracy", "resolved_rate", "token_accuracy_all", "edit_accuracy",
                        "code_compilation_success"}
    assert hrm["resolved_rate"] == 0.0 and hrm["exact_accuracy"] <= 2 / len(val)
    assert hrm["token_accuracy_all"] <= copy["token_accuracy_all"]  # it always changes something
    from hrm.eval.paired import exact_sign_p

    # the model minus each baseline on the same rows: the difference of the two rates, the
    # discordant rows adding up to it, and an interval around it
    assert set(m["paired"]) == set(m["baselines"])
    for name, by_metric in m["paired"].items():
        searched = "resolved_after_search" in m["baselines"][name]
        assert set(by_metric) == {"exact_accuracy", "resolved_rate"} | ({"resolved_after_search"} if searched else set())
        for metric, d in by_metric.items():
            assert d["difference"] == pytest.approx(m[metric] - m["baselines"][name][metric])
            assert d["difference"] == pytest.approx((d["model_only"] - d["baseline_only"]) / len(val))
            assert d["ci95"][0] <= d["difference"] <= d["ci95"][1]
            assert d["p_value"] == exact_sign_p(int(d["model_only"]), int(d["baseline_only"]))
    assert m["paired"]["copy"]["exact_accuracy"]["ci95"] == m["exact_accuracy_ci95"]

    # every split-level number is the aggregate of the rows written
    tok_c = sum(p["tokens"]["token_correct"] for p in preds)
    tok_t = sum(p["tokens"]["token_total"] for p in preds)
    assert m["token_accuracy_all"] == pytest.approx(tok_c / tok_t)
    edit_c = sum(p["tokens"]["edit_correct"] for p in preds)
    assert m["edit_accuracy"] == pytest.approx(edit_c / sum(p["tokens"]["edit_total"]
                                                            for p in preds))
    assert m["location_accuracy"] == pytest.approx(np.mean([p["tokens"]["located"]
                                                            for p in preds]))
    assert m["loss"] == pytest.approx(
        sum(p["loss"] * p["tokens"]["token_total"] for p in preds) / tok_t)
    tiers = [p["tier_score"] for p in preds if p["tier_score"] is not None]
    assert m["code_tiered_accuracy"] == pytest.approx(sum(tiers) / len(tiers))
    assert m["act_mean_steps"] == pytest.approx(sum(p["steps"] for p in preds) / len(preds))
    assert m["swe_search_candidates"] == pytest.approx(
        np.mean([p["search"]["candidates"] for p in preds]))
    assert m["greedy_pass_rate"] == pytest.approx(
        np.mean([p["search"]["greedy_passes"] for p in preds]))
    assert m["swe_search_score"] == pytest.approx(
        np.mean([p["search"]["best_passes"] for p in preds]))
    kinds = Counter(r["kind"] for r in val)
    exact = Counter(p["kind"] for p in preds if p["exact"])
    assert {k: {n: e[n] for n in ("rows", "exact_accuracy", "resolved", "resolved_after_search")}
            for k, e in m["breakdown"]["kind"].items()} == {
        k: {"rows": float(n), "exact_accuracy": exact[k] / n, "resolved": 0.0,
            "resolved_after_search": 0.0}
        for k, n in kinds.items()}


@pytest.mark.slow
def test_predictions_say_why_each_row_was_or_was_not_run(e2e):
    by_id = {p["instance_id"]: p for p in e2e["preds"]}
    for iid, p in by_id.items():
        if iid in e2e["chosen"]:
            assert p["has_env"] is True and p["resolved"] is False and p["test_reason"], iid
            assert p["code"]["context"] == "file" and p["search"]["verifier"] == "tests"
        else:
            assert p["has_env"] is False and p["resolved"] is None
            assert p["test_reason"] == "instance not in the instances file", p["test_reason"]
            assert p["search"]["verifier"] == "static"
        assert (p["outputs"] or p["abstained"]) and p["prediction"] and p["tier_name"]
        assert p["search"]["best_rank"] < p["search"]["candidates"]


@pytest.mark.slow
def test_report_and_mlflow_carry_the_same_numbers(e2e):
    from mlflow.tracking import MlflowClient

    m, root = e2e["metrics"], e2e["root"]
    report = (root / "eval" / "report.md").read_text()
    ckpt = sorted((root / "train" / "checkpoints").glob("step-*.pt"))[-1]
    assert f"`{ckpt}`" in report and f"phase {e2e['phase']}" in report
    assert f"rows: {len(e2e['val'])}." in report
    c, u = m["baselines"]["copy"], m["baselines"]["untrained"]
    assert f"| loss | {m['loss']:.4f} | n/a | n/a | {u['loss']:.4f} |" in report
    assert (f"| token_accuracy_all | {m['token_accuracy_all']:.4f} | "
            f"{c['token_accuracy_all']:.4f} |") in report
    assert "| resolved_rate | 0.0000 | 0.0000 | 0.0000 | 0.0000 |" in report
    assert "| metric | model | copy | unigram | untrained | untrained_alone | naturalness |" in report
    assert f"| abstained_rows | {m['abstained_rows']:.4f} | n/a | n/a |" in report
    assert (f"Without the naturalness re-ranking (the HRM's own best rewrite, always applied): "
            f"exact_accuracy {m['hrm_alone']['exact_accuracy']:.4f}") in report
    assert f"| swe_search_score | {m['swe_search_score']:.4f} |" in report
    assert "| k | model | unigram | untrained |" in report
    assert (f"| 1 | {m['resolved_within']['1']:.4f} | {m['baselines']['unigram']['resolved_within']['1']:.4f} "
            f"| {m['baselines']['untrained']['resolved_within']['1']:.4f} |") in report
    assert f"token_accuracy_all={m['token_accuracy_all']:.4f}" in e2e["stdout"]

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("hrm-e2e")
    runs = client.search_runs([exp.experiment_id], "tags.`hrm.step` = 'evaluate:val'")
    assert len(runs) == 1  # in the configured experiment, under the pipeline's parent run
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.data.tags["hrm.kind"] == "pipeline"
    logged = runs[0].data.metrics
    assert logged["loss"] == pytest.approx(m["loss"])
    assert logged["baseline_copy.token_accuracy_all"] == pytest.approx(c["token_accuracy_all"])
    assert logged["baseline_untrained.loss"] == pytest.approx(u["loss"])
    assert logged["hrm_alone.exact_accuracy"] == pytest.approx(m["hrm_alone"]["exact_accuracy"])
    assert logged["baseline_naturalness.exact_accuracy"] == pytest.approx(
        m["baselines"]["naturalness"]["exact_accuracy"])
    assert logged["paired_naturalness.exact_accuracy"] == pytest.approx(
        m["paired"]["naturalness"]["exact_accuracy"]["difference"])
    d = m["paired"]["untrained"]["resolved_rate"]
    assert f"| untrained | resolved_rate | {d['difference']:+.4f} | [{d['ci95'][0]:.4f}, " in report
    assert f"| {int(d['baseline_only'])} | {d['p_value']:.3g} |" in report
    # the search's curve: one point per k, the model's and each searching baseline's
    for key, curve in (("resolved_within", m["resolved_within"]),
                       ("baseline_untrained.resolved_within", u["resolved_within"])):
        history = client.get_metric_history(runs[0].info.run_id, key)
        assert {h.step: h.value for h in history} == {int(k): v for k, v in curve.items()}, key
        assert len(history) == len(curve) > 1
    arts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "eval/val")}
    assert {"eval/val/metrics.json", "eval/val/predictions.jsonl", "eval/val/report.md"} <= arts


def test_refuses_a_checkpoint_of_another_tokenizer(e2e, tmp_path):
    """Tokenizer, sequences and checkpoint must carry one fingerprint (sha256 of tokenizer.json);
    a mismatch or a checkpoint without one is refused, naming the files and both fingerprints."""
    import re

    import torch

    from hrm.errors import InputError
    from hrm.eval.evaluate import evaluate
    from hrm.tokenizer import load_tokenizer
    from hrm.train.checkpoint import list_checkpoints, save_checkpoint

    root, params = e2e["root"], e2e["params"]
    fp = load_tokenizer(root / "tok").fingerprint

    # Another tokenizer (one merge fewer): the sequences were not built with it.
    other = tmp_path / "tok"
    shutil.copytree(root / "tok", other)
    spec = json.loads((other / "tokenizer.json").read_text())
    spec["model"]["merges"] = spec["model"]["merges"][:-1]
    (other / "tokenizer.json").write_text(json.dumps(spec))
    meta = json.loads((other / "meta.json").read_text())
    meta.pop("tokenizer_sha256", None)
    (other / "meta.json").write_text(json.dumps(meta))
    other_fp = load_tokenizer(other).fingerprint
    with pytest.raises(InputError, match=f"sequences were built with another tokenizer.*{fp}.*"
                                         f"{re.escape(str(other / 'tokenizer.json'))}.*{other_fp}"):
        evaluate(params, root / "train" / "checkpoints", other, root / "seq", "val",
                 tmp_path / "out", None)

    # Tokenizer and sequences agree, the checkpoint records another fingerprint, or none.
    state = torch.load(list_checkpoints(root / "train" / "checkpoints")[-1], weights_only=False)
    for recorded, shown in (("f" * 64, "f" * 64), (None, "(none")):
        state["tokenizer_fingerprint"] = recorded
        ckpt_dir = tmp_path / f"ckpt-{recorded}"
        written = save_checkpoint(ckpt_dir, state, keep=1)
        with pytest.raises(InputError, match=f"{re.escape(str(written))}: checkpoint was trained "
                                             f"with another tokenizer.*{re.escape(shown)}.*{fp}"):
            evaluate(params, ckpt_dir, root / "tok", root / "seq", "val", tmp_path / "out", None)

    with pytest.raises(InputError, match="instances file not found"):
        evaluate(params, root / "train" / "checkpoints", root / "tok", root / "seq", "val",
                 tmp_path / "out", tmp_path / "missing.jsonl")
    assert not (tmp_path / "out").exists()


def test_refuses_a_corrupt_newest_checkpoint(e2e, tmp_path):
    """A checkpoints directory means its newest checkpoint: corrupt, it is an error naming the
    file, never a silent evaluation of an older one."""
    from hrm.eval.evaluate import evaluate
    from hrm.train.checkpoint import CorruptCheckpoint, list_checkpoints

    root = e2e["root"]
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(root / "train" / "checkpoints", ckpts)
    files = list_checkpoints(ckpts)
    assert len(files) >= 2, "needs an older checkpoint to (wrongly) fall back to"
    newest = files[-1]
    newest.write_bytes(newest.read_bytes()[:-16])  # truncated
    with pytest.raises(CorruptCheckpoint, match=f"{newest.name}.*sha256 mismatch"):
        evaluate(e2e["params"], ckpts, root / "tok", root / "seq", "val", tmp_path / "out", None)
    assert not (tmp_path / "out").exists()


def test_device_auto_resolves_like_training(e2e, tmp_path):
    """`train.device: auto` is cuda when available, else cpu; `cuda` without a device is an
    error, never a silent cpu run."""
    import torch

    from hrm.errors import InputError
    from hrm.eval.evaluate import evaluate
    from hrm.train.device import resolve_device

    root, params = e2e["root"], e2e["params"]
    assert str(resolve_device("auto")) == ("cuda:0" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        cuda = params.model_copy(
            update={"train": params.train.model_copy(update={"device": "cuda"})})
        with pytest.raises(InputError, match="no CUDA device"):
            evaluate(cuda, root / "train" / "checkpoints", root / "tok", root / "seq", "val",
                     tmp_path / "out", None)
        assert not (tmp_path / "out").exists()


def _checkpoint(tmp_path, model_cfg, meta, tok):
    """A checkpoint of an untrained model, written the way training writes them."""
    import torch

    from hrm.model import build_model
    from hrm.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(model_cfg, meta.vocab_size, meta.seq_len, "cpu", meta.slots,
                        meta.max_insertions)
    state = {"step": 0, "global_epoch": 0, "phase": "untrained",
             "vocab_size": meta.vocab_size, "seq_len": meta.seq_len, "slots": meta.slots,
             "max_insertions": meta.max_insertions,
             "model_config": model_cfg.model_dump(mode="json"), "model": model.state_dict(),
             "tokenizer_fingerprint": tok.fingerprint}
    save_checkpoint(tmp_path / "ckpt", state, keep=1)
    return tmp_path / "ckpt"


@pytest.mark.slow
def test_model_without_feedback_reports_not_applicable(e2e, tmp_path, sample_path):
    """`model.reverse_feedback: false` in the checkpoint: the reverse-learning metrics are null
    in metrics.json and the report says "Not applicable", not a number. Tests disabled: the
    rows with an environment are checked in their files, nothing runs, resolved is null."""
    from hrm.eval.evaluate import evaluate
    from hrm.sequences import load_meta
    from hrm.tokenizer import load_tokenizer

    root, params = e2e["root"], e2e["params"]
    no_fb = params.model.model_copy(update={"reverse_feedback": False})
    ckpt = _checkpoint(tmp_path, no_fb, load_meta(root / "seq"), load_tokenizer(root / "tok"))
    off = params.model_copy(update={"eval": params.eval.model_copy(update={"run_tests": False})})
    m = evaluate(off, ckpt, root / "tok", root / "seq", "val", tmp_path / "out", sample_path)
    for name in ("reverse_learning_integration", "reverse_integration_gate",
                 "reverse_planning_refinement"):
        assert m[name] is None, name
    assert m["resolved_rate"] is None and m["resolved_rate_ci95"] is None
    assert m["code_rows_file_context"] == m["rows"]  # every val row has its file
    assert m["swe_search_verifier"] == "static"
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["reverse_learning_integration"] is None
    report = (tmp_path / "out" / "report.md").read_text()
    section = report.split("## Reverse-learning ablation")[1].split("##")[0]
    assert "Not applicable: the model has no L->H feedback path" in section
    assert "reverse_learning_integration" not in section  # no number, no n/a row
    # no test ran, so nothing is resolved within any k: the report says so instead of a 0 column
    assert "Resolved within k candidates: not measured (no row's search ran the tests)." in report
    assert "| k | model |" not in report
    assert m["loss"] is not None and m["token_accuracy_all"] is not None  # the rest is scored


def test_loss_is_softmax_cross_entropy_for_a_stablemax_model(e2e):
    """The reported loss is, per labelled position, the softmax cross-entropy of its first
    output token + the insert decision's binary cross-entropy + (inserting positions) the
    inserted tokens' cross-entropy, even for a model configured with the stablemax loss."""
    import torch
    import torch.nn.functional as F

    from hrm.eval.model_pass import pass_metrics, run_model_pass
    from hrm.model import build_model
    from hrm.model.inference import run_inference, slot_logits
    from hrm.sequences import load_split

    data = load_split(e2e["root"] / "seq", "val")
    meta, ignore = data.meta, data.meta.ignore_index
    cfg = e2e["params"].model.model_copy(update={"loss": "stablemax"})
    torch.manual_seed(0)
    model = build_model(cfg, meta.vocab_size, meta.seq_len, "cpu", meta.slots,
                        meta.max_insertions)
    mp = run_model_pass(model, data, end_id=meta.eos_id, delete_id=meta.mask_id, batch_size=4,
                        halt_on_q=False, ablation=False, positions=4, alternatives=1)
    res = run_inference(model, data.inputs)
    want = []
    for b in range(len(data)):
        inserting = {int(e[0]): e[1:] for e in data.inserts[b] if int(e[0]) >= 0}
        total = 0.0
        for pos in np.flatnonzero(data.labels[b] != ignore):
            logits = res.logits[b, pos].float()
            total += float(F.cross_entropy(logits[None], torch.tensor([int(data.labels[b, pos])])))
            p_ins = torch.sigmoid(res.insert_logits[b, pos].float())
            total -= math.log(float(p_ins) if pos in inserting else float(1 - p_ins))
            if pos in inserting:
                slots = slot_logits(model, res.z_H, torch.tensor([b]), torch.tensor([int(pos)]))[0]
                for k, lab in enumerate(inserting[pos]):
                    if int(lab) != ignore:
                        total += float(F.cross_entropy(slots[k][None], torch.tensor([int(lab)])))
        want.append(total)
    np.testing.assert_allclose(mp.row_loss_sum, want, rtol=1e-4)
    assert any(len([e for e in row if e[0] >= 0]) for row in data.inserts)  # insertions scored
    positions = int((data.labels != ignore).sum())
    assert pass_metrics(mp)["loss"] == pytest.approx(sum(want) / positions, rel=1e-4)


@pytest.mark.slow
def test_transfer_drops_training_overlaps_and_scores_the_rest(e2e, sample_path):
    """`hrm transfer` with the real sample as the external set: its train-split rows are the
    training data and are dropped, with the rows editing a function trained on; the rest are
    scored with baselines."""
    root = e2e["root"]
    splits = json.loads((root / "splits" / "splits.json").read_text())["splits"]
    train = {k for k, s in splits.items() if s == "train"}
    out = root / "transfer"
    result = _invoke(["transfer", "--external", str(sample_path), "--checkpoint",
                      str(root / "train" / "checkpoints"), "--tokenizer", str(root / "tok"),
                      "--train-instances", str(sample_path), "--splits",
                      str(root / "splits" / "splits.json"), "--train-sequences",
                      str(root / "seq"), "--out", str(out), "--no-tests", "--params",
                      e2e["common"][-1]])
    overlap = json.loads((out / "overlap.json").read_text())
    dropped = {d["instance_id"]: d for d in overlap["dropped"]}
    assert overlap["external"] == len(splits) and train <= set(dropped)
    assert all(dropped[i]["reason"] == "same instance_id as a train row" for i in train)
    others = set(dropped) - train
    by_function = {i for i in others if dropped[i]["reason"].endswith("a function trained on")}
    assert others - by_function == {i for i in others
                                    if dropped[i]["reason"] == "same diff as a train row"}
    assert overlap["same_function_as_train"] == len(by_function)
    assert all(dropped[i]["train_row"] in train for i in others)
    kept = {json.loads(line)["instance_id"]
            for line in (out / "instances.jsonl").read_text().splitlines()}
    assert kept == set(splits) - set(dropped) and overlap["kept"] == len(kept)
    assert 0 < overlap["sequence_rows"] <= overlap["kept"]
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["rows"] == overlap["sequence_rows"]
    assert metrics["baselines"]["copy"]["resolved_rate"] is None  # --no-tests: not computed
    assert "transfer:" in result.output


@pytest.mark.slow
def test_predict_writes_swe_bench_patches_that_evaluate_would_score_the_same(e2e, sample_path,
                                                                            tmp_path):
    """`hrm predict` on every val instance: the SWE-bench fields, a patch that `git apply`s to
    the buggy tree and holds exactly the fix `hrm evaluate` scored for that row (its
    `prediction` spliced into the buggy files), and, run through the instance's tests by
    `score_predictions`, the resolved verdict evaluate gave."""
    from hrm.data.instance import read_instances
    from hrm.eval.execution import to_hunks
    from hrm.eval.patches import prediction_patch
    from hrm.predict import PREDICTION_KEYS, read_predictions, score_predictions
    from hrm.sequences import load_split

    from .test_patches import _git_apply

    root, params = e2e["root"], e2e["params"]
    val_ids = {r["instance_id"] for r in e2e["val"]}
    with sample_path.open(encoding="utf-8") as src, \
            (tmp_path / "val.jsonl").open("w", encoding="utf-8") as dst:
        for line in src:  # a temporary subset of the sample, never a repository file
            if line.strip() and json.loads(line)["instance_id"] in val_ids:
                dst.write(line)
    out = tmp_path / "preds.jsonl"
    result = _invoke(["predict", "--instances", str(tmp_path / "val.jsonl"), "--checkpoint",
                      str(root / "train" / "checkpoints"), "--tokenizer", str(root / "tok"),
                      "--out", str(out), "--params", e2e["common"][-1]])
    preds = {p["instance_id"]: p for p in read_predictions(out)}
    assert set(preds) == val_ids
    evaluated = {p["instance_id"]: p for p in e2e["preds"]}
    records = {r.instance_id: r for r in load_split(root / "seq", "val").records}
    instances = {i.instance_id: i for i in read_instances(tmp_path / "val.jsonl")}
    from hrm.envs import get_environment

    env = get_environment("swesmith/jd__tenacity.0d40e76f", params.envs)
    with_patch, compared = 0, 0
    for iid, pred in preds.items():
        assert list(pred)[:3] == list(PREDICTION_KEYS) and pred["hrm_context"] == "file"
        record = records[iid]
        # the same input row, model and decoding as evaluation, and the same naturalness cache
        # where evaluation had the instance (its repository in the buggy state): the same code.
        # (This evaluation's instances file holds the chosen rows only; predict reads every
        # row's repository snapshot.)
        if evaluated[iid]["has_env"]:
            assert pred["hrm_fixed_code"] == evaluated[iid]["prediction"], iid
            compared += 1
        if pred["hrm_reason"].startswith("special tokens"):
            assert pred["model_patch"] == ""
            continue
        if pred["hrm_reason"].startswith("kept"):  # naturalness abstained: the buggy code
            assert pred["model_patch"] == "" and pred["hrm_fixed_code"] == [h.buggy_text for h in record.hunks]
            continue
        with_patch += 1
        with env.working_copy(git=False) as tree:
            env.apply_patch(tree, instances[iid].patch)
            files = {h.file: (tree / h.file).read_bytes().decode() for h in record.hunks}
            want = prediction_patch(to_hunks(record.hunks), pred["hrm_fixed_code"], files)
            assert pred["model_patch"] == want and want.startswith("diff --git a/"), iid
            _git_apply(tree, pred["model_patch"])
        if evaluated[iid]["has_env"] and evaluated[iid]["model_patch"] is not None:
            assert pred["model_patch"] == evaluated[iid]["model_patch"]
    assert compared == len(e2e["chosen"])
    assert f"{with_patch}/{len(val_ids)} instances with a patch" in result.output

    chosen = tmp_path / "chosen.jsonl"
    chosen.write_text("".join(json.dumps(preds[i]) + "\n" for i in e2e["chosen"]))
    scored = score_predictions(chosen, root / "instances.jsonl", params.envs,
                               max_pass_to_pass=params.eval.max_pass_to_pass)
    for iid in e2e["chosen"]:
        assert scored[iid]["resolved"] is evaluated[iid]["resolved"], (iid, scored[iid])


def test_score_predictions_runs_each_patch_through_the_instance_tests(sample_path, tenacity_env,
                                                                      eval_params, tmp_path):
    """On a real tenacity row: the reference fix as a model_patch resolves, an empty patch is
    not run and not resolved, and a patch that does not apply to the buggy tree says so."""
    from hrm.envs.errors import PatchError
    from hrm.eval.patches import file_diff
    from hrm.hunks import parse_patch
    from hrm.predict import EMPTY_PATCH, score_predictions

    env, _ = tenacity_env
    for line in sample_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["repo"] != "swesmith/jd__tenacity.0d40e76f" or "pm_" not in row["instance_id"]:
            continue
        paths = sorted({h.file for h in parse_patch(row["patch"])})
        with env.working_copy(git=False) as tree:
            pristine = {p: (tree / p).read_text() for p in paths}
            try:
                env.apply_patch(tree, row["patch"])
            except PatchError:
                continue
            reverse = "".join(file_diff(p, (tree / p).read_text(), pristine[p]) for p in paths)
        break
    (tmp_path / "i.jsonl").write_text(line + "\n")  # a temporary copy, never a repository file
    iid = row["instance_id"]
    for name, patch in (("oracle", reverse), ("empty", ""),
                        ("stale", reverse.replace("\n-", "\n-#", 1))):
        (tmp_path / "p.jsonl").write_text(json.dumps(
            {"instance_id": iid, "model_name_or_path": name, "model_patch": patch}) + "\n")
        got = score_predictions(tmp_path / "p.jsonl", tmp_path / "i.jsonl", eval_params.envs,
                                max_pass_to_pass=1)[iid]
        if name == "oracle":
            assert got["resolved"] is True, got
        elif name == "empty":
            assert got == {"resolved": False, "reason": EMPTY_PATCH}
        else:
            assert got["resolved"] is False and "model_patch does not apply" in got["reason"], got
