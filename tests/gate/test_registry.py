"""Promotion and flagging in a real sqlite-backed MLflow Model Registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrm.gate.decide import decide
from hrm.gate.registry import CHECKPOINT_TAG, RegistryError, champion, flag, promote
from hrm.tracking import configure


def _client(params):
    from mlflow import MlflowClient

    configure(params.tracking)
    return MlflowClient()


def _versions(client, name):
    return sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))


def test_promote_then_second_promotion_keeps_first_and_rerun_is_idempotent(make_params, run_dirs, synth):
    params = make_params(synth.LENIENT)
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    first = promote(params, result, run_dirs.checkpoint, run_dirs.tokenizer)
    assert (first.action, first.version, first.created, first.previous_champion) == ("promoted", "1", True, None)
    client = _client(params)
    champ = champion(client, "hrm-swe", "champion")
    assert str(champ.version) == "1" and champ.tags["gate"] == "promoted"
    assert champ.tags["metric.val.loss"] == "0.62" and champ.tags[CHECKPOINT_TAG] == first.checkpoint_sha256

    # Same checkpoint again: no new version, alias unchanged.
    again = promote(params, result, run_dirs.checkpoint, run_dirs.tokenizer)
    assert (again.action, again.version, again.created) == ("already_champion", "1", False)
    assert _versions(client, "hrm-swe") == [1]

    # A different checkpoint: the first one's decision cannot promote it (its metrics are of
    # another model); evaluated and decided, a new version takes the alias, the first stays.
    run_dirs.new_checkpoint(b"weights-v2" * 1000)
    with pytest.raises(RegistryError, match="metrics were measured on checkpoint"):
        promote(params, result, run_dirs.checkpoint, run_dirs.tokenizer)
    assert _versions(client, "hrm-swe") == [1]
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    second = promote(params, result, run_dirs.checkpoint, run_dirs.tokenizer)
    assert (second.action, second.version, second.previous_champion) == ("promoted", "2", "1")
    client = _client(params)
    assert str(champion(client, "hrm-swe", "champion").version) == "2"
    assert _versions(client, "hrm-swe") == [1, 2]
    old = client.get_model_version("hrm-swe", "1")
    assert old.tags["champion_status"] == "previous" and old.tags["superseded_by"] == "2"
    # The registered artifacts are the candidate's files (downloaded back, not just logged).
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(
        artifact_uri="models:/hrm-swe@champion", dst_path=str(run_dirs.root / "dl")))
    assert (local / "artifacts" / "checkpoint" / "step-00000100.pt").read_bytes() == b"weights-v2" * 1000
    assert (local / "artifacts" / "tokenizer" / "meta.json").is_file()
    assert (local / "artifacts" / "params.yaml").is_file() and (local / "MLmodel").is_file()
    # an MLflow Model with a signature and pinned requirements, in a classic-ML experiment
    from mlflow.models import Model

    model = Model.load(str(local / "MLmodel"))
    assert "python_function" in model.flavors and model.signature is not None
    assert [c.name for c in model.signature.inputs.inputs] == ["problem_statement", "file_path",
                                                              "source", "function"]
    assert any(r.startswith("torch==") for r in (local / "requirements.txt").read_text().split())
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_flag_with_default_criteria_tags_and_never_moves_alias(make_params, run_dirs, synth):
    lenient = make_params(synth.LENIENT)
    promote(lenient, decide(lenient.gate, run_dirs.eval_dir, run_dirs.out_dir),
            run_dirs.checkpoint, run_dirs.tokenizer)
    run_dirs.new_checkpoint(b"weights-v2" * 1000)
    strict = make_params()  # the plan's defaults: this model fails five of six
    result = decide(strict.gate, run_dirs.eval_dir, run_dirs.out_dir)
    assert result.verdict == "FLAG"
    outcome = flag(strict, result, run_dirs.checkpoint, run_dirs.tokenizer)
    assert (outcome.action, outcome.version, outcome.champion_version) == ("flagged", "2", "1")
    client = _client(strict)
    v2 = client.get_model_version("hrm-swe", "2")
    assert v2.tags["gate"] == "flagged" and "val/loss < 0.3" in v2.tags["gate.failing"]
    assert str(champion(client, "hrm-swe", "champion").version) == "1"
    with pytest.raises(RegistryError, match="refusing to promote"):
        promote(strict, result, run_dirs.checkpoint, run_dirs.tokenizer)


def test_guard_blocks_a_candidate_worse_than_the_champion(make_params, run_dirs, synth):
    params = make_params(synth.LENIENT, guard_metric="loss")
    promote(params, decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir), run_dirs.checkpoint, run_dirs.tokenizer)
    synth.write_metrics(run_dirs.eval_dir, "val", {**synth.MID_TRAINING_VAL, "loss": 0.9})  # worse, still lenient-pass
    run_dirs.new_checkpoint(b"worse" * 1000)
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    assert result.verdict == "PROMOTE"
    outcome = promote(params, result, run_dirs.checkpoint, run_dirs.tokenizer)
    assert outcome.action == "guard_blocked" and "0.9 is worse than champion v1 0.62" in outcome.reasons[0]
    client = _client(params)
    assert str(champion(client, "hrm-swe", "champion").version) == "1"
    assert client.get_model_version("hrm-swe", "2").tags["gate"] == "flagged"


def test_alias_does_not_move_when_registered_artifacts_do_not_verify(make_params, run_dirs, synth):
    params = make_params(synth.LENIENT)
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    flagged_params = make_params()
    flag(flagged_params, decide(flagged_params.gate, run_dirs.eval_dir, run_dirs.root / "g2"),
         run_dirs.checkpoint, run_dirs.tokenizer)
    # Corrupt the stored copy of version 1: promotion must refuse before touching the alias.
    stored = next((run_dirs.root / "mlartifacts").rglob("model/artifacts/checkpoint/step-00000100.pt"))
    stored.write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="differ from the manifest"):
        promote(params, result, run_dirs.checkpoint, run_dirs.tokenizer)
    assert champion(_client(params), "hrm-swe", "champion") is None


def test_registers_exactly_the_newest_checkpoint_file_of_the_directory(make_params, run_dirs, synth):
    """The candidate is the one resolved checkpoint (newest step), hashed and registered alone:
    older checkpoints and other files in the directory are neither hashed nor uploaded."""
    import hashlib

    import mlflow

    params = make_params(synth.LENIENT)
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    older = synth.write_checkpoint(run_dirs.checkpoint, 50, b"older-weights" * 100)
    (run_dirs.checkpoint / "notes.txt").write_text("not a checkpoint")
    first = promote(params, result, run_dirs.checkpoint, run_dirs.tokenizer)
    newest = run_dirs.checkpoint / "step-00000100.pt"
    assert first.checkpoint_sha256 == hashlib.sha256(newest.read_bytes()).hexdigest()
    local = Path(mlflow.artifacts.download_artifacts(
        artifact_uri="models:/hrm-swe@champion", dst_path=str(run_dirs.root / "dl")))
    stored = local / "artifacts" / "checkpoint"
    assert sorted(p.name for p in stored.iterdir()) == ["step-00000100.json", "step-00000100.pt"]
    client = _client(params)
    assert client.get_model_version("hrm-swe", "1").tags["checkpoint_file"] == "step-00000100.pt"

    # Identity is the file's sha256: other files coming and going do not make a new version.
    older.unlink()
    (run_dirs.checkpoint / "notes.txt").write_text("changed")
    again = promote(params, result, run_dirs.checkpoint, run_dirs.tokenizer)
    assert (again.action, again.version, again.created) == ("already_champion", "1", False)
    # Passing the file itself is the same candidate.
    same = promote(params, result, newest, run_dirs.tokenizer)
    assert (same.version, same.created, same.checkpoint_sha256) == ("1", False, first.checkpoint_sha256)


@pytest.mark.parametrize("damage", ["flip_bytes", "no_manifest"])
def test_corrupt_newest_checkpoint_is_refused_never_replaced_by_an_older_one(make_params, run_dirs,
                                                                             synth, damage):
    from hrm.train.checkpoint import CorruptCheckpoint

    params = make_params(synth.LENIENT)
    result = decide(params.gate, run_dirs.eval_dir, run_dirs.out_dir)
    synth.write_checkpoint(run_dirs.checkpoint, 50, b"older-weights" * 100)  # valid, older
    newest = synth.write_checkpoint(run_dirs.checkpoint, 200, b"newest-weights" * 100)
    if damage == "flip_bytes":
        newest.write_bytes(b"newest-weightz" * 100)
    else:
        newest.with_suffix(".json").unlink()
    with pytest.raises(CorruptCheckpoint, match="step-00000200.pt"):
        promote(params, result, run_dirs.checkpoint, run_dirs.tokenizer)
    with pytest.raises(CorruptCheckpoint, match="step-00000200.pt"):
        flag(make_params(), decide(make_params().gate, run_dirs.eval_dir, run_dirs.root / "g2"),
             run_dirs.checkpoint, run_dirs.tokenizer)
    client = _client(params)
    assert champion(client, "hrm-swe", "champion") is None
    assert _versions(client, "hrm-swe") == []


def test_concurrent_promotions_leave_one_current_champion(make_params, run_dirs, synth, tmp_path):
    """Two `hrm gate promote` processes, each with its own candidate and decision, started at
    once against one sqlite registry: both register, the promotions run one after the other
    (the promotion lock), and exactly one version ends tagged current: the alias holder."""
    import json
    import os
    import subprocess
    import sys

    import yaml

    params = make_params(synth.LENIENT)
    params_file = tmp_path / "p.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    commands = []
    for name, payload in (("a", b"weights-a" * 1000), ("b", b"weights-b" * 1000)):
        ckpt = tmp_path / name / "checkpoints"
        ckpt.mkdir(parents=True)
        synth.write_checkpoint(ckpt, 100, payload)
        for split in ("val", "train"):
            synth.write_metrics(tmp_path / name / "eval", split, synth.MID_TRAINING_VAL)
        synth.stamp_checkpoint(tmp_path / name / "eval", ckpt)
        assert decide(params.gate, tmp_path / name / "eval", tmp_path / name / "gate").verdict == "PROMOTE"
        commands.append([sys.executable, "-m", "hrm", "gate", "promote", "--decision",
                         str(tmp_path / name / "gate" / "gate.json"), "--checkpoint", str(ckpt),
                         "--tokenizer", str(run_dirs.tokenizer), "--params", str(params_file)])
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for c in commands]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    client = _client(params)
    assert _versions(client, "hrm-swe") == [1, 2]
    holder = str(champion(client, "hrm-swe", "champion").version)
    current = [v.version for v in client.search_model_versions(
        "name='hrm-swe' and tags.champion_status='current'")]
    assert [str(v) for v in current] == [holder]
    other = "1" if holder == "2" else "2"
    tags = client.get_model_version("hrm-swe", other).tags
    assert tags["champion_status"] == "previous" and tags["superseded_by"] == holder
    # the later promotion's registry.json names the final champion
    final = [json.loads((tmp_path / n / "gate" / "registry.json").read_text()) for n in "ab"]
    assert holder in {r["champion_version"] for r in final}
    assert all(r["action"] == "promoted" for r in final)
