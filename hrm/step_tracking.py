"""What each data-preparation step logs to MLflow: one nested run per step, the same whoever
calls the step (the CLI under `dvc repro`, a KFP component, a test).

The step functions (`hrm.data.validate.validate`, `hrm.splits.build_splits`,
`hrm.corpus.build.corpus_step`, `hrm.tokenizer.build_tokenizer`,
`hrm.sequences.build_sequences`) take `tracking=params` and call these when it is given; the
training phases (`hrm.train.run_phase`), evaluation and the gate do their own logging the same
way. Each opens `hrm.tracking.step_run(params, <step>)`, so the run nests under the pipeline's
parent run (`HRM_PIPELINE_RUN` / the KFP pipeline run).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hrm.config import Params


def log_validate(params: Params, summary: dict[str, Any], out: Path, started: float) -> None:
    import mlflow

    from hrm.tracking import step_run

    with step_run(params, "validate", started=started):
        mlflow.log_params({f"data.{k}": getattr(params.data, k) for k in
                           ("max_invalid_fraction", "max_patch_lines",
                            "max_problem_statement_chars", "size_mostly")})
        mlflow.log_metrics({k: float(summary[k]) for k in
                            ("rows", "valid", "quarantined", "invalid_fraction")})
        mlflow.log_metrics({f"failures.{k}": float(v) for k, v in summary["failures"].items()})
        for name in ("summary.json", "report.md", "quarantine.jsonl"):
            mlflow.log_artifact(str(out / name), artifact_path="validated")


def log_split(params: Params, stats: dict[str, Any], started: float) -> None:
    import mlflow

    from hrm.tracking import step_run

    with step_run(params, "split", started=started):
        mlflow.log_params({f"sequences.{k}": getattr(params.sequences, k)
                           for k in ("split_seed", "val_fraction", "test_fraction")})
        mlflow.log_metrics({k: v for k, v in stats.items() if isinstance(v, int)})


def log_corpus(params: Params, summary, report: dict[str, Any], started: float) -> None:
    import mlflow

    from hrm.tracking import step_run

    with step_run(params, "corpus", started=started):
        mlflow.log_params({"corpus.packages": ",".join(p.package for p in params.corpus.packages),
                           "corpus.seed": params.corpus.seed,
                           "corpus.max_rows": params.corpus.max_rows})
        mlflow.log_metrics({"rows": summary.rows, "candidates": summary.candidates,
                            "functions": summary.functions, "elapsed_s": summary.elapsed_s,
                            "quarantined": report["quarantined"],
                            **{f"kind_{k}": v for k, v in summary.by_kind.items()}})


def log_tokenizer(params: Params, meta: dict[str, Any], started: float) -> None:
    import mlflow

    from hrm.tracking import step_run

    with step_run(params, "tokenizer", started=started):
        mlflow.log_params({f"tokenizer.{k}": v for k, v in meta["config"].items()})
        mlflow.log_metrics({k: meta[k] for k in
                            ("vocab_size", "training_texts", "training_chars")})
        mlflow.set_tags({"tokenizer.fingerprint": meta["tokenizer_sha256"],
                         "tokenizer.training_text_sha256": meta["training_text_sha256"]})


def log_sequences(params: Params, meta, started: float) -> None:
    import mlflow

    from hrm.tracking import step_run

    with step_run(params, "sequences", started=started):
        mlflow.log_params({f"sequences.{k}": v for k, v in meta.config.items()})
        metrics = {f"rows_{s}": n for s, n in meta.counts.items()}
        for s, reasons in meta.dropped.items():
            metrics |= {f"dropped_{r}_{s}": v for r, v in reasons.items()}
        for s, t in meta.truncation.items():
            metrics |= {f"{k}_{s}": v for k, v in t.items()}
        mlflow.log_metrics(metrics)
