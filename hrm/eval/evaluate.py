"""The evaluate step: checkpoint + tokenizer + sequences (+ instances for environments) ->
`predictions.jsonl`, `metrics.json` and `report.md` in `out_dir`, logged to MLflow.

`metrics.json` is flat at the top level for the model (names in `metric_names.py`), with the
baselines nested under `baselines.{copy,unigram}`. Null means not applicable or not computed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hrm.config import Params
from hrm.eval.baselines import place, target_ids, unigram_token
from hrm.eval.execution import ExecutionTier
from hrm.eval.metrics import q_halt_metrics, row_metrics
from hrm.eval.rows import RowResult, RowScorer

Decode = Callable[[np.ndarray], list[str]]


def score_system(name: str, split, pred_rows: np.ndarray, decode: Decode, buggy: list[list[int]],
                 refs: list[list[str]], scorer: RowScorer) -> list[RowResult]:
    """Score one system's [N, L] predictions row by row."""
    ignore = split.meta.ignore_index
    out = []
    for i, record in enumerate(tqdm(split.records, desc=f"score {name}", unit="row", leave=False)):
        out.append(scorer.score(record, pred_rows[i], split.labels[i], ignore, buggy[i],
                                decode(pred_rows[i]), refs[i]))
    return out


def load_instances(path: str | Path | None) -> dict[str, Any]:
    from hrm.data.instance import read_instances

    if path is None:
        return {}
    return {inst.instance_id: inst for inst in read_instances(path)}


def evaluate(params: Params, checkpoint: str | Path, tokenizer_dir: str | Path,
             sequences_dir: str | Path, split: str, out_dir: str | Path,
             instances_path: str | Path | None = None, *,
             train_sequences_dir: str | Path | None = None, label: str | None = None) -> dict[str, Any]:
    """Run the whole evaluation of `split`; returns the metrics written to metrics.json.

    `train_sequences_dir` (default: `sequences_dir`) holds the train split the unigram baseline
    is fitted on; `label` (default: `split`) names the run in the report and MLflow (transfer
    evaluation scores the `test` split of separately built sequences as `transfer`).

    The device is resolved like training's (`train.device: auto` = cuda when available, else
    cpu; `cuda` without a device is an error). A checkpoints directory means its newest
    checkpoint, which must verify. Sequences built with another tokenizer, a checkpoint trained
    with another tokenizer (or recording none), or on sequences of another shape, are refused
    rather than scored.
    """
    from hrm.errors import InputError
    from hrm.eval.decoding import decode_prediction
    from hrm.model.inference import unwrap
    from hrm.sequences import check_tokenizer, load_split
    from hrm.tokenizer import load_tokenizer
    from hrm.train.checkpoint import load_for_inference
    from hrm.train.loop import resolve_device

    cfg = params.eval
    if instances_path is not None and not Path(instances_path).is_file():
        raise InputError("instances file not found (pass --no-instances to skip the test tier)",
                         path=str(instances_path))
    tok = load_tokenizer(tokenizer_dir)
    data = load_split(sequences_dir, split)
    if len(data) == 0:
        raise InputError(f"split {split!r} has no rows", path=str(sequences_dir))
    check_tokenizer(sequences_dir, data.meta, tokenizer_dir, tok.fingerprint)
    model, info = load_for_inference(checkpoint, resolve_device(params.train.device))
    if info.tokenizer_fingerprint != tok.fingerprint:
        recorded = info.tokenizer_fingerprint or "(none: trained without a tokenizer directory)"
        raise InputError(f"checkpoint was trained with another tokenizer: it records tokenizer "
                         f"fingerprint {recorded}, {Path(tokenizer_dir) / 'tokenizer.json'} has "
                         f"{tok.fingerprint}", path=info.path)
    if (info.seq_len, info.vocab_size) != (data.meta.seq_len, data.meta.vocab_size):
        raise InputError(f"checkpoint expects seq_len={info.seq_len}, vocab={info.vocab_size}; "
                         f"sequences have {data.meta.seq_len}, {data.meta.vocab_size}",
                         path=str(sequences_dir))
    # Predictions keep the special tokens found inside their target: such a row fails the code
    # tiers (hrm.eval.decoding) instead of being scored on the text left after skipping them.
    decode: Decode = lambda ids: decode_prediction(tok, ids[data.meta.prompt_len:])  # noqa: E731
    execution = None
    if instances_path is not None:
        execution = ExecutionTier(params.envs, load_instances(instances_path),
                                  cfg.max_pass_to_pass,
                                  allow_unconfined=cfg.allow_unconfined_execution)
    scorer = RowScorer(cfg.tier_weights, execution, cfg.run_tests)
    train_dir = Path(train_sequences_dir) if train_sequences_dir is not None else Path(sequences_dir)
    train_split = load_split(train_dir, "train")
    check_tokenizer(train_dir, train_split.meta, tokenizer_dir, tok.fingerprint)
    if len(train_split) == 0:
        raise InputError("the train split is empty: no unigram baseline (pass the training "
                         "sequences as train_sequences_dir)", path=str(train_dir))
    return evaluate_loaded(params, model, data, tok, decode, scorer, out_dir,
                           train_labels=train_split.labels,
                           model_info={"checkpoint": info.path, "step": info.step,
                                       "phase": info.phase, "weights": info.weights,
                                       # from the built model (config defaults applied):
                                       # without a feedback path the ablation is n/a
                                       "reverse_feedback": bool(
                                           unwrap(model).cfg.reverse_feedback)},
                           split=label or split)


def evaluate_loaded(params: Params, model, data, tok, decode: Decode, scorer: RowScorer,
                    out_dir: str | Path, *, train_labels: np.ndarray, model_info: dict[str, Any],
                    split: str) -> dict[str, Any]:
    """The evaluation on loaded inputs (the testable core of `evaluate`)."""
    from hrm.eval.model_pass import pass_metrics, run_model_pass
    from hrm.eval.report import write_report
    from hrm.eval.search_runner import run_search

    cfg = params.eval
    ignore = data.meta.ignore_index
    refs = [decode(row) for row in data.labels]
    buggy = [target_ids([h.buggy_text for h in r.hunks], tok) for r in data.records]
    reverse = model_info["reverse_feedback"]
    mp = run_model_pass(model, data.inputs, data.labels, ignore_index=ignore,
                        batch_size=cfg.batch_size, halt_on_q=cfg.halt_on_q, ablation=reverse)
    model_rows = score_system("model", data, mp.pred_ids, decode, buggy, refs, scorer)
    for row, loss, n, q, s in zip(model_rows, mp.row_loss_sum, mp.row_tokens, mp.q_halt,
                                  mp.steps, strict=True):
        row.loss, row.q_halt, row.steps = float(loss / max(n, 1)), float(q), int(s)
    tests = cfg.run_tests and scorer.execution is not None
    metrics: dict[str, Any] = row_metrics(model_rows, tests_enabled=tests)
    metrics.update(pass_metrics(mp))
    metrics.update(q_halt_metrics(mp.q_halt.tolist(), [r.tokens.exact for r in model_rows]))

    copy_pred = np.stack([place(b, lab, ignore, tok.pad_id) for b, lab in zip(buggy, data.labels,
                                                                               strict=True)])
    uni = unigram_token(train_labels, ignore)
    uni_pred = np.stack([place([uni] * lab.shape[0], lab, ignore, tok.pad_id)
                         for lab in data.labels])
    baselines = {
        "copy": row_metrics(score_system("copy", data, copy_pred, decode, buggy, refs, scorer),
                            tests_enabled=tests),
        "unigram": row_metrics(score_system("unigram", data, uni_pred, decode, buggy, refs,
                                            scorer), tests_enabled=tests),
    }
    baselines["unigram"]["unigram_token_id"] = float(uni)

    outcomes, search_m = run_search(model, data, mp, model_rows, decode, buggy, refs, scorer,
                                    params)
    metrics.update(search_m)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as fh:
        for row, oc in zip(model_rows, outcomes, strict=True):
            rec = row.to_json()
            rec["search"] = {"best": oc.best_hunks, "best_passes": oc.best_passes,
                             "greedy_passes": oc.greedy_passes, "candidates": oc.candidates,
                             "iterations": oc.iterations, "converged": oc.converged,
                             "source": oc.best_source}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    result = {k: (None if v is None else float(v)) for k, v in metrics.items()}
    result["baselines"] = baselines
    (out / "metrics.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    write_report(out / "report.md", split, result, model_info, reverse)
    _log(params, split, result, out)
    return result


def _log(params: Params, split: str, metrics: dict[str, Any], out: Path) -> None:
    import mlflow

    from hrm.tracking import configure, step_run

    # step_run opens the nested run in MLflow's active experiment, which it does not set:
    # without this the step run lands in "Default" while its parent is in the configured one.
    mlflow.set_experiment(experiment_id=configure(params.tracking))
    with step_run(params, f"evaluate:{split}"):
        flat = {k: v for k, v in metrics.items() if isinstance(v, float)}
        for name, values in metrics["baselines"].items():
            flat.update({f"baseline_{name}.{k}": v for k, v in values.items() if v is not None})
        mlflow.log_metrics(flat)
        mlflow.log_artifacts(str(out), artifact_path=f"eval/{split}")
