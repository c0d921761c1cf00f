"""The layout of a registered model's directory (an MLflow Model saved by `hrm.pyfunc`).

Its own module so that loading a model's files (`hrm.repairer`) and saving them (`hrm.pyfunc`,
`hrm.gate.registry`) do not import each other.
"""

from __future__ import annotations

from pathlib import Path

from hrm.errors import InputError

ARTIFACTS = ("checkpoint", "tokenizer", "params")
"""The pyfunc artifacts every registered model carries."""


def artifact_paths(model_dir: str | Path) -> dict[str, Path]:
    """The checkpoint, tokenizer and params of a saved model directory (read from its MLmodel)."""
    from mlflow.models import Model

    model_dir = Path(model_dir)
    if not (model_dir / "MLmodel").is_file():
        raise InputError("not an MLflow Model directory (no MLmodel file)", path=str(model_dir))
    conf = Model.load(str(model_dir / "MLmodel")).flavors.get("python_function", {})
    stored = conf.get("artifacts", {})
    missing = [k for k in ARTIFACTS if k not in stored]
    if missing:
        raise InputError(f"the model has no {', '.join(missing)} artifact(s)", path=str(model_dir))
    return {k: model_dir / stored[k]["path"] for k in ARTIFACTS}
