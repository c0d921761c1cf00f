"""Every KFP component's `python_func` called directly with real small artifacts (the tiny
profile on the real sample), in pipeline order: the shells cannot drift from the steps they
wrap. `tests/pipeline/test_run_local.py` runs the same components through `kfp.local`; this
test needs no pipeline runner and names the component that broke."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kfp.dsl import HTML, Artifact, Dataset, Markdown, Metrics, Model

from components import steps


def _out(kind, root: Path, name: str):
    """A fresh output artifact whose path is `root/name` (a local uri is its own path)."""
    return kind(name=name, uri=str(root / name), metadata={})


@pytest.mark.slow
def test_every_component_runs_on_real_small_artifacts(sample_path: Path, tiny_params_file: Path,
                                                      tmp_path: Path, monkeypatch, step_runs) -> None:
    from mlflow import MlflowClient

    raw = yaml.safe_load(tiny_params_file.read_text())
    repo = Path(__file__).resolve().parents[2]
    raw["envs"]["cache_dir"] = str(repo / ".cache" / "hrm-envs")
    raw["corpus"]["cache_dir"] = str(repo / ".cache" / "hrm-corpus")
    raw["eval"]["run_tests"] = False
    raw["sequences"]["held_out_repos"] = []  # the sample is all tenacity: keep train rows
    monkeypatch.chdir(tmp_path)  # MLflow artifacts land here
    text = json.dumps(raw)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ctx = dict(profile="tiny", tracking_uri=uri, pipeline_run="unit-test-run")

    resolved = steps.resolve_params.python_func(params=text, profile="tiny", epochs_scale=1.0,
                                                lr_scale=1.0, criteria_json="")
    assert json.loads(resolved)["profile"] == "tiny"
    params = resolved
    snapshot = _out(Dataset, tmp_path, "snapshot.jsonl")
    steps.ingest.python_func(params=params, profile="tiny", data_source=str(sample_path),
                             snapshot=snapshot)
    assert len(Path(snapshot.path).read_text().splitlines()) == 57

    validated = _out(Dataset, tmp_path, "validated")
    summary = _out(Metrics, tmp_path, "validate_summary")
    steps.validate.python_func(params=params, snapshot=snapshot, validated=validated,
                               summary=summary, report=_out(Markdown, tmp_path, "validate.md"),
                               **ctx)
    assert summary.metadata["valid"] == 57.0

    splits = _out(Dataset, tmp_path, "splits")
    steps.split.python_func(params=params, validated=validated, splits=splits,
                            stats=_out(Metrics, tmp_path, "split_stats"), **ctx)
    corpus = _out(Dataset, tmp_path, "corpus")
    corpus_summary = _out(Metrics, tmp_path, "corpus_summary")
    steps.corpus.python_func(params=params, corpus_dir=corpus, summary=corpus_summary, **ctx)
    assert corpus_summary.metadata["rows"] > 0
    tok = _out(Artifact, tmp_path, "tokenizer")
    steps.tokenizer.python_func(params=params, validated=validated, splits=splits,
                                corpus_dir=corpus, tokenizer_dir=tok, **ctx)
    seqs = _out(Dataset, tmp_path, "sequences")
    steps.sequences.python_func(params=params, validated=validated, splits=splits,
                                corpus_dir=corpus, tokenizer_dir=tok, sequences_dir=seqs, **ctx)
    assert (Path(seqs.path) / "meta.json").is_file()

    models = {}
    previous = None
    for phase in ("foundation", "optimisation", "refinement"):
        model = _out(Model, tmp_path, f"train_{phase}")
        steps.train_phase.python_func(params=params, phase=phase, gpus=1, sequences_dir=seqs,
                                      tokenizer_dir=tok, model=model,
                                      summary=_out(Metrics, tmp_path, f"{phase}_summary"),
                                      previous=previous, **ctx)
        assert any((Path(model.path) / "checkpoints").glob("*.pt")), phase
        models[phase] = previous = model

    control = _out(Model, tmp_path, "train_control")
    steps.train_control.python_func(params=params, gpus=1, sequences_dir=seqs, tokenizer_dir=tok,
                                    control=control, **ctx)
    steps_run = json.loads((Path(control.path) / "control.json").read_text())["steps"]
    assert set(steps_run) == set(models) and all(n > 0 for n in steps_run.values())

    evals = {}
    for split in ("val", "test"):
        evaluation = _out(Dataset, tmp_path, f"eval_{split}")
        metrics = _out(Metrics, tmp_path, f"eval_{split}_metrics")
        steps.evaluate.python_func(params=params, split=split, model=models["refinement"],
                                   control=control,
                                   tokenizer_dir=tok, sequences_dir=seqs, validated=validated,
                                   evaluation=evaluation, metrics=metrics,
                                   report=_out(Markdown, tmp_path, f"eval_{split}.md"), **ctx)
        assert "loss" in metrics.metadata, split
        assert metrics.metadata["reverse_learning_p_value"] > 0, split  # the paired ablation ran
        evals[split] = evaluation

    decision = _out(Dataset, tmp_path, "decision")
    verdict = steps.gate.python_func(params=params, eval_val=evals["val"], eval_test=evals["test"],
                                     train_foundation=models["foundation"],
                                     train_optimisation=models["optimisation"],
                                     train_refinement=models["refinement"], decision=decision,
                                     gate_metrics=_out(Metrics, tmp_path, "gate_metrics"),
                                     report=_out(HTML, tmp_path, "gate.html"), **ctx)
    assert verdict == json.loads((Path(decision.path) / "gate.json").read_text())["verdict"].lower()
    # The tiny model does not meet the plan's criteria: the flag branch, as the DAG would take.
    assert verdict == "flag"
    record = _out(Dataset, tmp_path, "record")
    notice = _out(Markdown, tmp_path, "notice.md")
    action = steps.flag.python_func(params=params, decision=decision, model=models["refinement"],
                                    tokenizer_dir=tok, notice=notice, record=record, **ctx)
    assert action == "flagged"
    assert json.loads((Path(record.path) / "registry.json").read_text())["action"] == "flagged"
    assert "action: **flagged**" in Path(notice.path).read_text()
    # The promote branch refuses a FLAG decision rather than promoting it.
    from hrm.gate.registry import RegistryError

    with pytest.raises(RegistryError, match="refusing to promote: the gate decision is FLAG"):
        steps.promote.python_func(params=params, decision=decision, model=models["refinement"],
                                  tokenizer_dir=tok, registration=_out(Markdown, tmp_path, "reg.md"),
                                  record=_out(Dataset, tmp_path, "record2"), **ctx)

    # Every step logged its own run under the one parent, as under `dvc repro`.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    steps_logged = sorted(
        r.data.tags["hrm.step"] for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id], "tags.`hrm.kind` = 'step'")
        if not r.data.tags["hrm.step"].startswith("gate-"))
    assert steps_logged == step_runs.expected
