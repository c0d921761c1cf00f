"""Glue that the component bodies run inside the image: no step logic lives here (the params
rules are `hrm.config.run_params`).

A KFP task gets its configuration as pipeline parameters (the params.yaml text and the
profile) and its inputs as separate artifact paths. These helpers turn the former into the
validated `Params` every step takes, lay the latter out the way the `hrm` steps expect them
(`eval/<split>/`, `train/<phase>/`), and surface the steps' JSON metrics in the KFP UI.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from hrm.config import ConfigError, Params, params_mapping, parse_params, run_params
from hrm.errors import InputError
from hrm.tracking import PIPELINE_RUN_ENV

PARAMS_SOURCE = "pipeline parameter params"
ENVS_CACHE_ENV = "HRM_ENVS_CACHE_DIR"
"""Set by the CPU image to the environment cache baked into it (docker/Dockerfile.cpu); when
set, it replaces `envs.cache_dir`, so evaluation's tests tier finds the built environments
instead of downloading them in the pod."""
CORPUS_CACHE_ENV = "HRM_CORPUS_CACHE_DIR"
"""Set by the CPU image to the corpus sdists baked into it; when set, it replaces
`corpus.cache_dir`, so the corpus task mutates them without downloading."""


def resolve_params(
    params: str,
    profile: str,
    epochs_scale: float = 1.0,
    lr_scale: float = 1.0,
    criteria_json: str = "",
) -> dict[str, Any]:
    """The params mapping every task runs with (`hrm.config.run_params`: the profile applied,
    then the UI overrides `epochs_scale`, `lr_scale` and `criteria_json`)."""
    return run_params(params, profile, epochs_scale=epochs_scale, lr_scale=lr_scale,
                      criteria_json=criteria_json, source=PARAMS_SOURCE)


def task_params(
    params: str,
    profile: str,
    data_source: str = "",
    tracking_uri: str = "",
    pipeline_run: str = "",
) -> Params:
    """Validate the pipeline's params mapping into `Params` and set the task's tracking context.

    `params` is params.yaml's content (profiles included) as JSON or YAML text, or the
    `resolve_params` output the pipeline's first task passes on. `data_source` (when
    non-empty) overrides `data.source`; $HRM_ENVS_CACHE_DIR and $HRM_CORPUS_CACHE_DIR (set in the
    image) override `envs.cache_dir` and `corpus.cache_dir`; `tracking_uri` becomes
    MLFLOW_TRACKING_URI (a pod's local sqlite file would be lost with the pod), and
    `pipeline_run` (the KFP run id) becomes HRM_PIPELINE_RUN so that every task of one run
    nests under the same MLflow parent run.
    """
    raw = params_mapping(params, PARAMS_SOURCE)
    if not isinstance(raw, dict):
        raise ConfigError(f"{PARAMS_SOURCE}: top level must be a mapping")
    if data_source:
        raw.setdefault("data", {})["source"] = data_source
    if os.environ.get(ENVS_CACHE_ENV):
        raw.setdefault("envs", {})["cache_dir"] = os.environ[ENVS_CACHE_ENV]
    if os.environ.get(CORPUS_CACHE_ENV):
        raw.setdefault("corpus", {})["cache_dir"] = os.environ[CORPUS_CACHE_ENV]
    params = parse_params(raw, profile or None, source=PARAMS_SOURCE)
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    if pipeline_run:
        os.environ[PIPELINE_RUN_ENV] = pipeline_run
    return params


def flatten_metrics(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten a (possibly nested) JSON mapping to the finite numbers KFP can display.

    `null` (not applicable / not computed) and non-numeric values are left out rather than
    shown as a number; booleans are not metrics either.
    """
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, prefix=f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(float(value)):
                flat[name] = float(value)
    return flat


def log_metrics_file(metrics: Any, path: str | Path) -> dict[str, float]:
    """Log every finite number of the JSON object at `path` on a KFP `Metrics` artifact."""
    path = Path(path)
    if not path.is_file():
        raise InputError("metrics file the step should have written is missing", path=str(path))
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err}", path=str(path), line=err.lineno) from None
    if not isinstance(values, dict):
        raise InputError("metrics must be a JSON object", path=str(path))
    flat = flatten_metrics(values)
    for name, value in flat.items():
        metrics.log_metric(name, value)
    return flat


def publish_text(src: str | Path, artifact: Any) -> None:
    """Copy a report the step wrote (Markdown or HTML) to a KFP artifact so the UI renders it."""
    src = Path(src)
    if not src.is_file():
        raise InputError("report the step should have written is missing", path=str(src))
    Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
    Path(artifact.path).write_text(src.read_text(encoding="utf-8"), encoding="utf-8")


def stage_layout(root: str | Path, entries: dict[str, str]) -> Path:
    """Symlink artifact paths under `root` at the relative paths the steps expect.

    KFP stores each upstream output at its own URI; steps such as the gate read one
    directory tree (`eval/val/metrics.json`, `train/foundation/history.csv`, ...).
    Returns `root`. A missing source is an error naming the entry.
    """
    root = Path(root)
    for rel, src in entries.items():
        source = Path(src)
        if not source.exists():
            raise InputError(f"input artifact for '{rel}' does not exist", path=str(source))
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            raise InputError(f"layout entry '{rel}' given twice", path=str(link))
        link.symlink_to(source.resolve(), target_is_directory=source.is_dir())
    return root


def torchrun_command(nproc_per_node: int, cli_args: list[str]) -> list[str]:
    """The command that runs `hrm <cli_args>` on `nproc_per_node` GPUs of this pod (DDP).

    One process per GPU; `--standalone` because a KFP task is a single pod. Multi-node runs go
    to the Kubeflow Trainer instead (docs/kubeflow.md).
    """
    if nproc_per_node < 2:
        raise ValueError(f"torchrun is for 2 or more GPUs, got nproc_per_node={nproc_per_node}")
    return [
        "torchrun",
        "--standalone",
        f"--nproc_per_node={nproc_per_node}",
        "-m",
        "hrm",
        *cli_args,
    ]


def run_cli_under_torchrun(cfg: Params, gpus: int, cli_args: list[str], out: str) -> None:
    """Run `hrm <cli_args> --params F --profile P` on `gpus` GPUs of this pod (DDP needs one
    process per GPU, so the step runs as the CLI); the resolved params go through a file `F`
    beside the `out` directory, because the CLI reads one."""
    import subprocess

    import yaml

    params_file = os.path.join(os.path.dirname(out) or ".", "params.resolved.yaml")
    with open(params_file, "w", encoding="utf-8") as fh:
        yaml.safe_dump(cfg.model_dump(mode="json"), fh, sort_keys=False)
    subprocess.run(torchrun_command(gpus, [*cli_args, "--params", params_file, "--profile", cfg.profile]),
                   check=True)
