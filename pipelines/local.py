"""Run the compiled DAG on this machine with `kfp.local` (one subprocess per task).

The same pipeline function the cluster runs, executed by `kfp.local.SubprocessRunner` in the
current Python environment (`use_venv=False`: the environment already has `hrm`, exactly as
the image does, so nothing is installed). Outputs land under `<out>/local_outputs/`; MLflow
goes to a sqlite file in `<out>` (its artifacts under the working directory's
`tracking.artifact_location`) so a local run never touches the project's tracking store.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from hrm.errors import InputError

RESULT_FILE = "run_local.json"

# The pipeline's output is the registry action of the branch that ran; the branch follows.
BRANCH_OF_ACTION = {
    "promoted": "promote",
    "already_champion": "promote",
    "guard_blocked": "promote",
    "flagged": "flag",
}


@dataclass(frozen=True)
class LocalRunResult:
    """What a local run produced: the gate branch taken and where the task outputs are."""

    branch: str
    """`promote` or `flag`: the gate branch that ran."""

    action: str
    """The registry action of that branch (the pipeline's output): `promoted`,
    `already_champion`, `guard_blocked` or `flagged`."""

    pipeline_root: str
    """Directory holding one sub-directory per task with its output artifacts."""

    tracking_uri: str
    """MLflow store the run logged to."""


def run_local(
    data_file: str | Path,
    out_dir: str | Path,
    params_path: str | Path = "params.yaml",
    profile: str = "tiny",
    *,
    epochs_scale: float = 1.0,
    lr_scale: float = 1.0,
    criteria_json: str = "",
) -> LocalRunResult:
    """Run the whole pipeline locally on `data_file` (JSONL of SWE-smith instances).

    `epochs_scale`, `lr_scale` and `criteria_json` are the pipeline parameters of the same
    names (see `pipelines.hrm_pipeline`).
    """
    from kfp import local

    from pipelines.hrm_pipeline import build_pipeline, read_params_mapping

    data_file = Path(data_file).resolve()
    if not data_file.is_file():
        raise InputError("data file not found", path=str(data_file))
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline_root = out_dir / "local_outputs"
    tracking_uri = f"sqlite:///{out_dir / 'mlflow.db'}"

    pipeline_func = build_pipeline(params_path)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        workspace_root=str(out_dir / "workspace"),
        raise_on_error=True,
    )
    task = pipeline_func(
        params=json.dumps(read_params_mapping(params_path)),
        profile=profile,
        data_source=str(data_file),
        tracking_uri=tracking_uri,
        gpus_per_task=1,
        epochs_scale=epochs_scale,
        lr_scale=lr_scale,
        criteria_json=criteria_json,
    )
    action = str(task.output)
    if action not in BRANCH_OF_ACTION:
        raise RuntimeError(f"pipeline returned {action!r}, not a registry action "
                           f"({', '.join(BRANCH_OF_ACTION)})")
    result = LocalRunResult(
        branch=BRANCH_OF_ACTION[action], action=action, pipeline_root=str(pipeline_root),
        tracking_uri=tracking_uri,
    )
    (out_dir / RESULT_FILE).write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result
