"""The gate on a really trained tiny model: the real SWE-smith sample through splits, tokenizer,
sequences, three training phases and evaluation, then decide, report and the registry. The
registered champion must load back as a working model."""

from __future__ import annotations

import json
import math
import operator
from pathlib import Path

import pytest
import yaml

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@pytest.fixture()
def trained(sample_path, make_params, tmp_path):
    """Artifacts of the tiny pipeline on the real sample (no tracking for the upstream steps)."""
    from hrm.corpus.build import build_corpus
    from hrm.eval.evaluate import evaluate
    from hrm.sequences import build_sequences
    from hrm.splits import build_splits
    from hrm.tokenizer import build_tokenizer
    from hrm.train.run import run_phase

    params = make_params()
    art = tmp_path / "artifacts"
    build_splits(sample_path, art / "splits", params.sequences)
    build_corpus(params.corpus, art / "corpus", progress=False)
    corpus = art / "corpus" / "corpus.jsonl"
    build_tokenizer(sample_path, art / "splits" / "splits.json", art / "tokenizer", params.tokenizer,
                    corpus_path=corpus)
    build_sequences(sample_path, art / "splits" / "splits.json", art / "tokenizer", art / "sequences",
                    params.sequences, corpus_path=corpus, envs=params.envs, progress=False)
    previous = None
    for phase in params.train.phases:
        out = art / "train" / phase.name
        run_phase(params, phase.name, art / "sequences", art / "tokenizer", out, resume_from=previous, track=False)
        previous = out / "checkpoints"
    evaluate(params, previous, art / "tokenizer", art / "sequences", "val", art / "eval" / "val")
    return art


@pytest.mark.slow
def test_gate_on_a_really_trained_tiny_model(trained, make_params, tmp_path):
    import mlflow

    from hrm.gate.step import run_gate
    from hrm.train.checkpoint import load_for_inference

    art = trained
    strict = make_params()  # the plan's criteria: 4 tiny epochs cannot meet them
    outcome = run_gate(strict, art / "eval", art / "train", art / "gate")
    metrics = json.loads((art / "eval" / "val" / "metrics.json").read_text())
    # The verdict follows from the real metrics, criterion by criterion.
    for c in outcome.result.criteria:
        value = metrics.get(c.metric)
        expected = value is not None and math.isfinite(value) and OPS[c.op](value, c.threshold)
        assert c.passed == expected, c
    assert outcome.result.verdict == "FLAG" and outcome.registry.action == "flagged"
    report = (art / "gate" / "report.md").read_text()
    epochs = sum(p.epochs for p in strict.train.phases)
    assert f"**too_few_points**: {epochs} epoch(s) logged" in report  # tiny: no fit pretended
    assert (art / "gate" / "plots" / "learning_curves.png").stat().st_size > 10_000

    gate = yaml.safe_load(Path(__file__).with_name("lenient_gate.yaml").read_text())["gate"]
    lenient = make_params(gate["criteria"], primary_metric=gate["primary_metric"])
    promoted = run_gate(lenient, art / "eval", art / "train", art / "gate")
    # same checkpoint as the flagged run: the same version is promoted, none is added
    assert (promoted.registry.action, promoted.registry.version, promoted.registry.created) == ("promoted", "1", False)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri="models:/hrm-swe@champion",
                                                     dst_path=str(tmp_path / "champion")))
    model, info = load_for_inference(local / "checkpoint", "cpu")
    assert sum(p.numel() for p in model.parameters()) > 0 and info.step > 0

    # A second candidate: the refinement phase once more from the champion's checkpoint.
    from hrm.train.run import run_phase

    more = art / "train_more" / "refinement"
    run_phase(lenient, "refinement", art / "sequences", art / "tokenizer", more,
              resume_from=art / "train" / "refinement" / "checkpoints", track=False)
    second = run_gate(lenient, art / "eval", art / "train", art / "gate2", checkpoint=more / "checkpoints")
    assert (second.registry.action, second.registry.version, second.registry.previous_champion) == \
        ("promoted", "2", "1")
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("hrm-swe", "champion").version) == "2"
    first = client.get_model_version("hrm-swe", "1")  # still registered, marked as superseded
    assert first.tags["champion_status"] == "previous" and first.tags["superseded_by"] == "2"
