"""`hrm train` then `hrm evaluate` through the CLI on the real sample: a real (briefly trained)
checkpoint, the tenacity execution tier on one val row, MLflow logging, and the three outputs
checked against each other."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from hrm.eval.metric_names import METRIC_NAMES

from .conftest import EVAL_TARGET_TOKENS, build_real

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
    """Build, train (`hrm train`, foundation phase) and evaluate (`hrm evaluate --split val`)."""
    from hrm.config import load_params

    root = tmp_path_factory.mktemp("eval-e2e")
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["profile"] = "tiny"
    raw["profiles"]["tiny"]["sequences"]["max_target_tokens"] = EVAL_TARGET_TOKENS
    raw["data"]["snapshot"] = str(root / "no-snapshot.jsonl")
    raw["envs"]["cache_dir"] = str(repo_root / ".cache" / "hrm-envs")
    raw["tracking"] = {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                       "artifact_location": str(root / "mlartifacts"), "experiment": "hrm-e2e"}
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(params_path)
    build_real(sample_path, root, params)

    val = [json.loads(line) for line in (root / "seq" / "val.jsonl").read_text().splitlines()]
    chosen = [r["instance_id"] for r in val if not r["target_truncated"]][:ENV_ROWS]
    assert len(chosen) == ENV_ROWS
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
        _invoke(["train", "--phase", "foundation", "--out", str(root / "train"), "--no-track",
                 *common])
        result = _invoke(["evaluate", "--split", "val", "--checkpoint",
                          str(root / "train" / "checkpoints"), "--out", str(root / "eval"),
                          "--instances", str(root / "instances.jsonl"), *common])
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    preds = [json.loads(line) for line in
             (root / "eval" / "predictions.jsonl").read_text().splitlines()]
    return {"root": root, "params": params, "metrics": metrics, "preds": preds, "chosen": chosen,
            "stdout": result.output, "common": common, "val": val}


@pytest.mark.slow
def test_metrics_json_is_complete_and_honest(e2e):
    m, preds, val = e2e["metrics"], e2e["preds"], e2e["val"]
    assert set(METRIC_NAMES) <= set(m)
    for name in METRIC_NAMES:
        assert m[name] is None or (isinstance(m[name], float) and math.isfinite(m[name])), name
    # an all-wrong split leaves one Q class empty; every other metric is computed
    assert {k for k in METRIC_NAMES if m[k] is None} <= {"q_halt_balanced_accuracy"}
    assert m["rows"] == len(val) == len(preds)
    vocab = json.loads((e2e["root"] / "seq" / "meta.json").read_text())["vocab_size"]
    assert m["loss"] < math.log(vocab) - 0.3  # trained: below the uniform guess
    assert m["token_accuracy_all"] < 0.5 and m["exact_accuracy"] == 0.0
    # one row has an environment; a briefly trained model does not resolve it
    assert m["resolved_rate"] == 0.0
    assert m["resolved_rows_without_env"] == len(val) - ENV_ROWS
    assert m["greedy_pass_rate"] == 0.0 and m["swe_search_score"] <= 0.2
    assert 0.0 <= m["reverse_learning_integration"] <= 1.0
    assert 0.0 < m["reverse_integration_gate"] < 1.0
    copy, uni = m["baselines"]["copy"], m["baselines"]["unigram"]
    assert copy["token_accuracy_all"] > m["token_accuracy_all"]
    assert copy["edit_accuracy"] < 0.1 and copy["resolved_rate"] == 0.0
    assert copy["code_rows_file_context"] == ENV_ROWS  # the copy compiles in its file
    assert uni["exact_accuracy"] == 0.0 and uni["resolved_rate"] == 0.0

    # every split-level number is the aggregate of the rows written
    tok_c = sum(p["tokens"]["token_correct"] for p in preds)
    tok_t = sum(p["tokens"]["token_total"] for p in preds)
    assert m["token_accuracy_all"] == pytest.approx(tok_c / tok_t)
    assert m["loss"] == pytest.approx(
        sum(p["loss"] * p["tokens"]["token_total"] for p in preds) / tok_t)
    tiers = [p["tier_score"] for p in preds if p["tier_score"] is not None]
    assert m["code_tiered_accuracy"] == pytest.approx(sum(tiers) / len(tiers))
    assert m["act_mean_steps"] == pytest.approx(sum(p["steps"] for p in preds) / len(preds))
    assert m["swe_search_candidates"] == pytest.approx(
        sum(p["search"]["candidates"] for p in preds) / len(preds))


@pytest.mark.slow
def test_predictions_say_why_each_row_was_or_was_not_run(e2e):
    by_id = {p["instance_id"]: p for p in e2e["preds"]}
    truncated = {r["instance_id"] for r in e2e["val"] if r["target_truncated"]}
    for iid, p in by_id.items():
        if iid in e2e["chosen"]:
            assert p["has_env"] is True and p["resolved"] is False and p["test_reason"], iid
            assert p["code"]["context"] == "file" or p["code"]["context"].startswith("excluded")
        else:
            assert p["has_env"] is False and p["resolved"] is None
            want = "target truncated" if iid in truncated else "instance not in the instances file"
            assert want in p["test_reason"], (iid, p["test_reason"])
        assert p["search"]["greedy_passes"] is False and p["search"]["iterations"] >= 1
        assert len(p["prediction"]) >= 1 and p["tier_name"]


@pytest.mark.slow
def test_report_and_mlflow_carry_the_same_numbers(e2e):
    from mlflow.tracking import MlflowClient

    m, root = e2e["metrics"], e2e["root"]
    report = (root / "eval" / "report.md").read_text()
    ckpt = sorted((root / "train" / "checkpoints").glob("step-*.pt"))[-1]
    assert f"`{ckpt}`" in report and "phase foundation" in report
    assert f"rows: {len(e2e['val'])}." in report
    assert f"| loss | {m['loss']:.4f} | n/a | n/a |" in report
    c = m["baselines"]["copy"]
    assert (f"| token_accuracy_all | {m['token_accuracy_all']:.4f} | "
            f"{c['token_accuracy_all']:.4f} |") in report
    assert "| resolved_rate | 0.0000 | 0.0000 | 0.0000 |" in report
    assert f"| swe_search_score | {m['swe_search_score']:.4f} |" in report
    assert f"loss={m['loss']:.4f}" in e2e["stdout"]

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("hrm-e2e")
    runs = client.search_runs([exp.experiment_id], "tags.`hrm.step` = 'evaluate:val'")
    assert len(runs) == 1  # in the configured experiment, under the pipeline's parent run
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.data.tags["hrm.kind"] == "pipeline"
    logged = runs[0].data.metrics
    assert logged["loss"] == pytest.approx(m["loss"])
    assert logged["baseline_copy.token_accuracy_all"] == pytest.approx(c["token_accuracy_all"])
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
    meta.pop("tokenizer_sha256")
    (other / "meta.json").write_text(json.dumps(meta))
    other_fp = load_tokenizer(other).fingerprint
    with pytest.raises(InputError, match=f"sequences were built with another tokenizer.*{fp}.*"
                                         f"{re.escape(str(other / 'tokenizer.json'))}.*{other_fp}"):
        evaluate(params, root / "train" / "checkpoints", other, root / "seq", "val", tmp_path / "out", None)

    # Tokenizer and sequences agree, the checkpoint records another fingerprint, or none.
    state = torch.load(list_checkpoints(root / "train" / "checkpoints")[-1], weights_only=False)
    for recorded, shown in (("f" * 64, "f" * 64), (None, "(none")):
        state["tokenizer_fingerprint"] = recorded
        ckpt_dir = tmp_path / f"ckpt-{recorded}"
        written = save_checkpoint(ckpt_dir, state, keep=1)
        with pytest.raises(InputError, match=f"{re.escape(str(written))}: checkpoint was trained with "
                                             f"another tokenizer.*{re.escape(shown)}.*{fp}"):
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


def test_device_auto_resolves_like_training(e2e, tmp_path, monkeypatch):
    """`train.device: auto` loads on cuda when available (else cpu); `cuda` without a device
    is an error, never a silent cpu run."""
    import torch

    import hrm.train.checkpoint as ckpt
    from hrm.errors import InputError
    from hrm.eval.evaluate import evaluate

    root, params = e2e["root"], e2e["params"]
    seen = []

    def spy(path, device="cpu", **kw):
        seen.append(str(device))
        raise InputError("stop after the device is chosen")

    monkeypatch.setattr(ckpt, "load_for_inference", spy)
    auto = params.model_copy(update={"train": params.train.model_copy(update={"device": "auto"})})
    with pytest.raises(InputError, match="stop after"):
        evaluate(auto, root / "train" / "checkpoints", root / "tok", root / "seq", "val",
                 tmp_path / "out", None)
    assert seen == ["cuda:0" if torch.cuda.is_available() else "cpu"]
    if not torch.cuda.is_available():
        cuda = params.model_copy(
            update={"train": params.train.model_copy(update={"device": "cuda"})})
        with pytest.raises(InputError, match="no CUDA device"):
            evaluate(cuda, root / "train" / "checkpoints", root / "tok", root / "seq", "val",
                     tmp_path / "out", None)


@pytest.mark.slow
def test_transfer_drops_training_overlaps_and_scores_the_rest(e2e, sample_path):
    """`hrm transfer` with the real sample as the external set: its train-split rows are the
    training data and must be dropped; the other rows are scored with baselines."""
    root = e2e["root"]
    splits = json.loads((root / "splits" / "splits.json").read_text())["splits"]
    n_train = sum(1 for s in splits.values() if s == "train")
    out = root / "transfer"
    result = _invoke(["transfer", "--external", str(sample_path), "--checkpoint", str(root / "train" / "checkpoints"),
                      "--tokenizer", str(root / "tok"), "--train-instances", str(sample_path),
                      "--splits", str(root / "splits" / "splits.json"), "--train-sequences", str(root / "seq"),
                      "--out", str(out), "--no-tests", "--params", e2e["common"][-1]])
    overlap = json.loads((out / "overlap.json").read_text())
    assert overlap["external"] == len(splits) and len(overlap["dropped"]) == n_train
    assert {d["instance_id"] for d in overlap["dropped"]} == {k for k, s in splits.items() if s == "train"}
    assert overlap["kept"] == len(splits) - n_train and 0 < overlap["sequence_rows"] <= overlap["kept"]
    kept = {json.loads(line)["instance_id"] for line in (out / "instances.jsonl").read_text().splitlines()}
    assert not kept & {k for k, s in splits.items() if s == "train"}
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["rows"] == overlap["sequence_rows"]
    assert metrics["baselines"]["copy"]["resolved_rate"] is None  # --no-tests: not computed
    assert "transfer:" in result.output


@pytest.mark.slow
def test_same_diff_under_another_id_is_dropped(e2e, sample_path):
    from dataclasses import replace

    from hrm.data.instance import read_instances, write_instances
    from hrm.eval.transfer import diff_key, prepare_transfer

    root = e2e["root"]
    splits = json.loads((root / "splits" / "splits.json").read_text())["splits"]
    rows = read_instances(sample_path)
    train_row = next(r for r in rows if splits[r.instance_id] == "train")
    held_out = next(r for r in rows if splits[r.instance_id] != "train")
    # the same edit at other line numbers, under a new id: still the training bug
    moved = train_row.patch.replace("@@ -", "@@ -1", 1)
    assert diff_key(moved) == diff_key(train_row.patch) != diff_key(held_out.patch)
    renamed = replace(train_row, instance_id=train_row.instance_id.rsplit("__", 1)[0] + "__copy0001",
                      patch=moved)
    external = root / "external.jsonl"  # temporary, never a repository file
    write_instances(external, [renamed, held_out])
    prep = prepare_transfer(external, sample_path, root / "splits" / "splits.json", root / "tok",
                            root / "transfer-dedupe", e2e["params"].sequences)
    assert prep.kept == 1 and prep.dropped == [
        {"instance_id": renamed.instance_id, "reason": "same diff as a train row",
         "train_row": train_row.instance_id}]
