"""The KFP v2 lightweight components, one per pipeline step.

Every body imports and calls one `hrm` step function and nothing else of substance: KFP only
decides where the files live. The bodies run inside the project image (components/image.py),
which carries `hrm`, `components` and every dependency, so `packages_to_install` is empty and
`install_kfp_package=False` (the image pins kfp too): nothing is pip-installed in the cluster.

KFP serialises only the body's source, so every import a body needs is inside it.
"""

# No `from __future__ import annotations`: KFP reads the annotations as types.

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import BASE_IMAGE, GPU_IMAGE

# No run-time installs anywhere: the image is the environment.
_COMMON = {"packages_to_install": [], "install_kfp_package": False}


@dsl.component(base_image=BASE_IMAGE, **_COMMON)
def resolve_params(
    params: str,
    profile: str,
    epochs_scale: float,
    lr_scale: float,
    criteria_json: str,
) -> str:
    """The params every other task runs with: `profile` applied, then the run's overrides
    (epochs and learning-rate scales, gate criteria), validated. Not a DVC stage: under DVC the
    same values are edited in params.yaml.
    """
    import json

    from components.runtime import resolve_params as resolve

    return json.dumps(resolve(params, profile, epochs_scale=epochs_scale, lr_scale=lr_scale,
                              criteria_json=criteria_json))


@dsl.component(base_image=BASE_IMAGE, **_COMMON)
def ingest(
    params: str,
    profile: str,
    data_source: str,
    snapshot: Output[Dataset],
) -> None:
    """Materialise the data source (`hf:`, a file, a directory, or `synth:`) as one JSONL snapshot.

    DVC equivalent: `hrm data materialise` (a pull) behind data.dvc (not a dvc.yaml stage).
    """
    from pathlib import Path

    from components.runtime import task_params
    from hrm.data.materialise import obtain

    cfg = task_params(params, profile, data_source=data_source)
    obtain(cfg, cfg.data.source, Path(snapshot.path))


@dsl.component(base_image=BASE_IMAGE, **_COMMON)
def validate(
    params: str,
    profile: str,
    tracking_uri: str,
    pipeline_run: str,
    snapshot: Input[Dataset],
    validated: Output[Dataset],
    summary: Output[Metrics],
    report: Output[Markdown],
) -> None:
    """Great Expectations validation; bad rows quarantined. Stage `validate`."""
    import os

    from components.runtime import log_metrics_file, publish_text, task_params
    from hrm.data.validate import validate as run_validate

    cfg = task_params(params, profile, tracking_uri=tracking_uri, pipeline_run=pipeline_run)
    run_validate(snapshot.path, validated.path, cfg.data, tracking=cfg)
    log_metrics_file(summary, os.path.join(validated.path, "summary.json"))
    publish_text(os.path.join(validated.path, "report.md"), report)


@dsl.component(base_image=BASE_IMAGE, **_COMMON)
def split(
    params: str,
    profile: str,
    tracking_uri: str,
    pipeline_run: str,
    validated: Input[Dataset],
    splits: Output[Dataset],
    stats: Output[Metrics],
) -> None:
    """Leak-free train/val/test assignment. Stage `split`."""
    import os

    from components.runtime import log_metrics_file, task_params
    from hrm.splits import build_splits

    cfg = task_params(params, profile, tracking_uri=tracking_uri, pipeline_run=pipeline_run)
    build_splits(os.path.join(validated.path, "instances.jsonl"), splits.path, cfg.sequences,
                 tracking=cfg)
    log_metrics_file(stats, os.path.join(splits.path, "split_stats.json"))


@dsl.component(base_image=BASE_IMAGE, **_COMMON)
def corpus(
    params: str,
    profile: str,
    tracking_uri: str,
    pipeline_run: str,
    corpus_dir: Output[Dataset],
    summary: Output[Metrics],
) -> None:
    """The mutation corpus of pinned packages, validated (bad rows quarantined). Stage `corpus`."""
    import os

    from components.runtime import log_metrics_file, task_params
    from hrm.corpus.build import corpus_step

    cfg = task_params(params, profile, tracking_uri=tracking_uri, pipeline_run=pipeline_run)
    corpus_step(cfg, corpus_dir.path, progress=False)
    log_metrics_file(summary, os.path.join(corpus_dir.path, "summary.json"))


@dsl.component(base_image=BASE_IMAGE, **_COMMON)
def tokenizer(
    params: str,
    profile: str,
    tracking_uri: str,
    pipeline_run: str,
    validated: Input[Dataset],
    splits: Input[Dataset],
    corpus_dir: Input[Dataset],
    tokenizer_dir: Output[Artifact],
) -> None:
    """Byte-level BPE trained on the train split and the corpus. Stage `tokenizer`."""
    import os

    from components.runtime import task_params
    from hrm.tokenizer import build_tokenizer

    cfg = task_params(params, profile, tracking_uri=tracking_uri, pipeline_run=pipeline_run)
    build_tokenizer(
        os.path.join(validated.path, "instances.jsonl"),
        os.path.join(splits.path, "splits.json"),
        tokenizer_dir.path,
        cfg.tokenizer,
        corpus_path=os.path.join(corpus_dir.path, "corpus.jsonl"),
        tracking=cfg,
    )


@dsl.component(base_image=BASE_IMAGE, **_COMMON)
def sequences(
    params: str,
    profile: str,
    tracking_uri: str,
    pipeline_run: str,
    validated: Input[Dataset],
    splits: Input[Dataset],
    corpus_dir: Input[Dataset],
    tokenizer_dir: Input[Artifact],
    sequences_dir: Output[Dataset],
) -> None:
    """Whole buggy functions labelled with aligned edits, per split and for the corpus.
    Stage `sequences`."""
    import os

    from components.runtime import task_params
    from hrm.sequences import build_sequences

    cfg = task_params(params, profile, tracking_uri=tracking_uri, pipeline_run=pipeline_run)
    build_sequences(
        os.path.join(validated.path, "instances.jsonl"),
        os.path.join(splits.path, "splits.json"),
        tokenizer_dir.path,
        sequences_dir.path,
        cfg.sequences,
        corpus_path=os.path.join(corpus_dir.path, "corpus.jsonl"),
        envs=cfg.envs,
        progress=False,
        tracking=cfg,
    )


@dsl.component(base_image=GPU_IMAGE, **_COMMON)
def train_phase(
    params: str,
    profile: str,
    tracking_uri: str,
    pipeline_run: str,
    phase: str,
    gpus: int,
    sequences_dir: Input[Dataset],
    tokenizer_dir: Input[Artifact],
    model: Output[Model],
    summary: Output[Metrics],
    previous: Input[Model] = None,
) -> None:
    """One training phase, resuming from the previous phase's checkpoints when given.

    Stages `train_<phase>`. With `gpus` > 1 the same `hrm train` command runs under torchrun
    (one process per GPU of this pod, DDP); multi-node training goes to the Kubeflow Trainer.
    """
    import os

    from components.runtime import log_metrics_file, run_cli_under_torchrun, task_params
    from hrm.train.run import run_phase

    cfg = task_params(params, profile, tracking_uri=tracking_uri, pipeline_run=pipeline_run)
    resume = os.path.join(previous.path, "checkpoints") if previous is not None else None
    if gpus > 1:
        args = ["train", "--phase", phase, "--sequences", sequences_dir.path,
                "--tokenizer", tokenizer_dir.path, "--out", model.path]
        if resume:
            args += ["--resume-from", resume]
        run_cli_under_torchrun(cfg, gpus, args, model.path)
    else:
        run_phase(cfg, phase, sequences_dir.path, tokenizer_dir.path, model.path,
                  resume_from=resume)
    log_metrics_file(summary, os.path.join(model.path, "summary.json"))


@dsl.component(base_image=GPU_IMAGE, **_COMMON)
def train_control(
    params: str,
    profile: str,
    tracking_uri: str,
    pipeline_run: str,
    gpus: int,
    sequences_dir: Input[Dataset],
    tokenizer_dir: Input[Artifact],
    control: Output[Model],
) -> None:
    """The reverse-learning control: every phase with the feedback path off, same data, seed
    and epochs (only its record when `train.reverse_control` is off). Stage `train_control`; it
    runs beside the model's training, on as many GPUs (DDP under torchrun) so that its ranks
    read the same shares of the data as the model's."""
    from components.runtime import run_cli_under_torchrun, task_params
    from hrm.train.control import train_control as run_control

    cfg = task_params(params, profile, tracking_uri=tracking_uri, pipeline_run=pipeline_run)
    if gpus > 1:
        run_cli_under_torchrun(cfg, gpus, ["train-control", "--sequences", sequences_dir.path,
                                           "--tokenizer", tokenizer_dir.path, "--out", control.path],
                               control.path)
    else:
        run_control(cfg, sequences_dir.path, tokenizer_dir.path, control.path)


@dsl.component(base_image=BASE_IMAGE, **_COMMON)
def evaluate(
    params: str,
    profile: str,
    tracking_uri: str,
    pipeline_run: str,
    split: str,
    model: Input[Model],
    control: Input[Model],
    tokenizer_dir: Input[Artifact],
    sequences_dir: Input[Dataset],
    validated: Input[Dataset],
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[Markdown],
) -> None:
    """Metrics, baselines, SWE-search and the paired reverse-learning ablation (against
    `control`) on one split.

    Stage `evaluate@<split>`.
    """
    import os

    from components.runtime import log_metrics_file, publish_text, task_params
    from hrm.eval.evaluate import evaluate as run_evaluate

    cfg = task_params(params, profile, tracking_uri=tracking_uri, pipeline_run=pipeline_run)
    run_evaluate(cfg, os.path.join(model.path, "checkpoints"), tokenizer_dir.path,
                 sequences_dir.path, split, evaluation.path,
                 instances_path=os.path.join(validated.path, "instances.jsonl"),
                 control_dir=control.path)
    log_metrics_file(metrics, os.path.join(evaluation.path, "metrics.json"))
    publish_text(os.path.join(evaluation.path, "report.md"), report)


@dsl.component(base_image=BASE_IMAGE, **_COMMON)
def gate(
    params: str,
    profile: str,
    tracking_uri: str,
    pipeline_run: str,
    eval_val: Input[Dataset],
    eval_test: Input[Dataset],
    train_foundation: Input[Model],
    train_optimisation: Input[Model],
    train_refinement: Input[Model],
    decision: Output[Dataset],
    gate_metrics: Output[Metrics],
    report: Output[HTML],
) -> str:
    """The convergence gate: returns the verdict, `promote` or `flag`. Stage `gate`.

    The step reads one tree (`eval/<split>/`, `train/<phase>/`), so the inputs are linked
    into that layout first. Registry promotion is left to the `promote` branch. The report is
    the gate's self-contained `report.html` (plots inlined), so the KFP UI renders the plots;
    `report.md` and `plots/` stay in the `decision` dataset.
    """
    import json
    import os
    import tempfile

    from components.runtime import log_metrics_file, publish_text, stage_layout, task_params
    from hrm.gate.step import run_gate

    cfg = task_params(params, profile, tracking_uri=tracking_uri, pipeline_run=pipeline_run)
    root = stage_layout(tempfile.mkdtemp(prefix="hrm-gate-"), {
        "eval/val": eval_val.path,
        "eval/test": eval_test.path,
        "train/foundation": train_foundation.path,
        "train/optimisation": train_optimisation.path,
        "train/refinement": train_refinement.path,
    })
    run_gate(cfg, os.path.join(root, "eval"), os.path.join(root, "train"), decision.path,
             use_registry=False)
    log_metrics_file(gate_metrics, os.path.join(decision.path, "gate.json"))
    publish_text(os.path.join(decision.path, "report.html"), report)
    with open(os.path.join(decision.path, "gate.json"), encoding="utf-8") as fh:
        return str(json.load(fh)["verdict"]).lower()


@dsl.component(base_image=BASE_IMAGE, **_COMMON)
def promote(
    params: str,
    profile: str,
    tracking_uri: str,
    pipeline_run: str,
    decision: Input[Dataset],
    model: Input[Model],
    tokenizer_dir: Input[Artifact],
    registration: Output[Markdown],
    record: Output[Dataset],
) -> str:
    """Register the refinement checkpoint and move the alias (gate verdict `promote`).

    Returns the registry's action: `promoted`, `already_champion`, or `guard_blocked` (the
    champion guard kept the alias where it was and flagged the version instead), which is also
    the pipeline run's output. `hrm.gate.registry.promote` refuses anything but a PROMOTE
    decision, so this branch cannot promote a flagged model even if wired wrongly. `record`
    holds what the DVC gate stage leaves: `gate.json` with the registry action and
    `registry.json` (`hrm.gate.step.act_on_decision`, the one path after a decision).
    """
    import os
    import shutil
    from pathlib import Path

    from components.runtime import task_params
    from hrm.gate.decide import read_gate_json
    from hrm.gate.step import act_on_decision, outcome_markdown

    cfg = task_params(params, profile, tracking_uri=tracking_uri, pipeline_run=pipeline_run)
    result = read_gate_json(os.path.join(decision.path, "gate.json"))
    os.makedirs(record.path, exist_ok=True)
    shutil.copy(os.path.join(decision.path, "gate.json"), record.path)
    outcome = act_on_decision(cfg, result, Path(model.path) / "checkpoints",
                              Path(tokenizer_dir.path), record.path, action="promote")
    with open(registration.path, "w", encoding="utf-8") as fh:
        fh.write(outcome_markdown(outcome))
    return outcome.action


@dsl.component(base_image=BASE_IMAGE, **_COMMON)
def flag(
    params: str,
    profile: str,
    tracking_uri: str,
    pipeline_run: str,
    decision: Input[Dataset],
    model: Input[Model],
    tokenizer_dir: Input[Artifact],
    notice: Output[Markdown],
    record: Output[Dataset],
) -> str:
    """Register the checkpoint and tag it `gate=flagged` with its failing criteria (gate verdict
    `flag`); the champion alias never moves. Returns the registry's action (`flagged`). The
    notice carries the registry outcome and the gate's report (every failed criterion and warning).

    `hrm.gate.registry.flag` refuses a PROMOTE decision, mirroring `promote`; `record` as there.
    """
    import os
    import shutil
    from pathlib import Path

    from components.runtime import task_params
    from hrm.gate.decide import read_gate_json
    from hrm.gate.step import act_on_decision, outcome_markdown

    cfg = task_params(params, profile, tracking_uri=tracking_uri, pipeline_run=pipeline_run)
    result = read_gate_json(os.path.join(decision.path, "gate.json"))
    os.makedirs(record.path, exist_ok=True)
    shutil.copy(os.path.join(decision.path, "gate.json"), record.path)
    outcome = act_on_decision(cfg, result, Path(model.path) / "checkpoints",
                              Path(tokenizer_dir.path), record.path, action="flag")
    with open(os.path.join(decision.path, "report.md"), encoding="utf-8") as fh:
        report = fh.read()
    with open(notice.path, "w", encoding="utf-8") as fh:
        fh.write(outcome_markdown(outcome, report))
    return outcome.action
