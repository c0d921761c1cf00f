"""The `hrm train --phase` step: files in, files out, tracked in MLflow (rank 0 only)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from hrm.config import Params
from hrm.train.data import load_train_arrays, load_val_arrays
from hrm.train.loop import PhaseResult, train_phase


def _flat(prefix: str, mapping: dict) -> dict[str, str]:
    out = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            out.update(_flat(name, value))
        elif key != "phases":
            out[name] = str(value)
    return out


def _system_tags() -> dict[str, str]:
    import torch

    return {"sys.torch": torch.__version__, "sys.python": platform.python_version(),
            "sys.platform": platform.platform(), "sys.cpu_count": str(os.cpu_count()),
            "sys.cuda": str(torch.cuda.is_available()), "sys.world_size": os.environ.get("WORLD_SIZE", "1")}


def run_phase(
    params: Params,
    phase_name: str,
    sequences_dir: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    *,
    resume_from: str | Path | None = None,
    resume: str = "none",
    track: bool = True,
    allow_config_change: bool = False,
    run_name: str | None = None,
    final_eval: bool = True,
    pipeline_params: Params | None = None,
) -> PhaseResult:
    """Load the phase's split (`phase.data`: the corpus or the train instances), train one phase,
    log it to MLflow under `run_name` (default `train:<phase>`): a nested run
    of the pipeline's parent run with params, system tags, per-epoch metrics (step = global
    epoch), and artifacts: config.json, history.csv/json, summary.json, the final checkpoint and
    its manifest (`checkpoint/`), and the tokenizer's tokenizer.json + meta.json (`tokenizer/`).

    With `train.val_every_epochs` on, the `val` split of the same sequences is evaluated per epoch
    (history `val_*` columns, MLflow metrics at step = global epoch); a sequences dir without val
    rows trains without it, said once.

    `final_eval` off skips the end-of-phase train evaluation; `pipeline_params` (default
    `params`): the pipeline run whose MLflow parent run this run goes under (the control's).

    Refuses sequences built with another tokenizer than `tokenizer_dir` (their meta.json's
    `tokenizer_fingerprint` against the sha256 of `tokenizer_dir/tokenizer.json`).
    """

    from hrm.sequences import check_tokenizer, load_meta
    from hrm.tokenizer import META_FILE, TOKENIZER_FILE, tokenizer_fingerprint

    out_dir = Path(out_dir)
    phase_idx, phase = params.train.phase_index(phase_name)
    check_tokenizer(sequences_dir, load_meta(sequences_dir), tokenizer_dir, tokenizer_fingerprint(tokenizer_dir))
    arrays = load_train_arrays(sequences_dir, phase.data)
    if phase.augment:
        from hrm.train.augmentation import make_augment

        arrays.augment = make_augment(sequences_dir, phase.data, tokenizer_dir,
                                      seed=params.train.seed + 1000 * phase_idx,
                                      rate=params.train.augment_rate)
    if params.train.rank_weight > 0:
        from hrm.train.negatives import make_negatives

        arrays.negatives = make_negatives(tokenizer_dir, seed=params.train.seed + 1000 * phase_idx + 1,
                                          count=params.train.rank_negatives, slots=arrays.slots)
    is_main = int(os.environ.get("RANK", "0")) == 0
    # Only rank 0 runs the val pass.
    val_arrays = load_val_arrays(sequences_dir) if params.train.val_every_epochs and is_main else None
    if params.train.val_every_epochs and val_arrays is None and is_main:
        print(f"{Path(sequences_dir)} has no val rows: no per-epoch validation (history val_* columns stay empty)")
    if not (track and is_main):
        return train_phase(params, phase_name, arrays, out_dir, resume_from=resume_from, resume=resume,
                           tokenizer_dir=tokenizer_dir, val_arrays=val_arrays,
                           allow_config_change=allow_config_change, final_eval=final_eval)

    import mlflow

    from hrm.tracking import step_run

    with step_run(pipeline_params or params, run_name or f"train:{phase_name}"):
        mlflow.log_params({**_flat("model", params.model.model_dump(mode="json")),
                           **_flat("train", params.train.model_dump(mode="json")),
                           **_flat("phase", phase.model_dump(mode="json")),
                           "data.train_examples": str(len(arrays.inputs)),
                           "data.val_examples": str(0 if val_arrays is None else
                                                    min(len(val_arrays.inputs), params.train.val_max_rows or 10**12)),
                           "data.seq_len": str(arrays.seq_len), "data.vocab_size": str(arrays.vocab_size)})
        mlflow.set_tags({"hrm.phase": phase_name,
                         "hrm.tokenizer_fingerprint": tokenizer_fingerprint(tokenizer_dir), **_system_tags()})

        def on_epoch(row: dict) -> None:
            metrics = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and k not in ("epoch", "step")}
            mlflow.log_metrics(metrics, step=int(row["epoch"]))

        result = train_phase(params, phase_name, arrays, out_dir, resume_from=resume_from, resume=resume,
                             tokenizer_dir=tokenizer_dir, on_epoch=on_epoch, val_arrays=val_arrays,
                             allow_config_change=allow_config_change, final_eval=final_eval)
        mlflow.log_metrics({k: float(v) for k, v in result.summary.items()
                            if k.startswith("train_eval_") and isinstance(v, (int, float))})
        config_path = out_dir / "config.json"
        config_path.write_text(json.dumps({"model": params.model.model_dump(mode="json"),
                                           "train": params.train.model_dump(mode="json"),
                                           "phase": phase_name}, indent=2))
        for name in ("config.json", "history.csv", "history.json", "summary.json"):
            mlflow.log_artifact(str(out_dir / name))
        # The tokenizer the token ids mean something under (a few hundred KiB): tokenizer.json and
        # its meta.json, so a run's checkpoint can be decoded from MLflow alone.
        for name in (TOKENIZER_FILE, META_FILE):
            if (Path(tokenizer_dir) / name).is_file():
                mlflow.log_artifact(str(Path(tokenizer_dir) / name), artifact_path="tokenizer")
        if result.checkpoint is not None:
            mlflow.log_artifact(str(result.checkpoint), artifact_path="checkpoint")
            mlflow.log_artifact(str(result.checkpoint.with_suffix(".json")), artifact_path="checkpoint")
    return result
