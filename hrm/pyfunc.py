"""The registered model as an MLflow Model: a `python_function` flavor around the checkpoint, the
tokenizer and the params it was trained with, so `mlflow.pyfunc.load_model('models:/hrm-swe@
champion').predict(df)` and `mlflow models serve` work without this repository checked out.

Layout of the model directory (what `hrm gate` registers, `save_model`):

    MLmodel, python_env.yaml, requirements.txt, conda.yaml, input_example.json, ...
    artifacts/checkpoint/   the one checkpoint file and its manifest
    artifacts/tokenizer/    tokenizer.json + meta.json + training_code.jsonl (the n-gram base)
    artifacts/params.yaml   the resolved params (sequence budget, eval search settings)
    code/hrm/               this package (so loading needs no install of it)

Signature (pandas in, pandas out), one row per function to repair:

    inputs   problem_statement (str, optional)  the issue text; '' when none
             file_path (str)                     the file's path, as the diff should name it
             source (str)                        the whole buggy file (or just the function)
             function (str, optional)            `func` or `Class.method`; '' = the model picks
    outputs  function, fixed_code, model_patch, changed, change_probability, q_halt,
             truncated, reason

A row whose file does not parse, or names a function that is not there, gets its `reason` and
empty code instead of failing the whole request.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import yaml

from hrm.errors import HrmError, InputError
from hrm.model_dir import ARTIFACTS, artifact_paths  # noqa: F401  (re-exported)

INPUT_COLUMNS = ("problem_statement", "file_path", "source", "function")
OUTPUT_COLUMNS = ("function", "fixed_code", "model_patch", "changed", "change_probability",
                  "q_halt", "truncated", "reason")
REQUIREMENTS = ("torch", "numpy", "tokenizers", "pydantic", "pyyaml", "tqdm", "pandas", "mlflow")
"""Pinned to the versions installed where the model is saved."""

EXAMPLE_SOURCE = '''def clamp(value, low, high):
    """Limit value to the range [low, high]."""
    if value < low:
        return low
    if value < high:
        return high
    return value
'''


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("string", "problem_statement", required=False),
                     ColSpec("string", "file_path"), ColSpec("string", "source"),
                     ColSpec("string", "function", required=False)])
    outputs = Schema([ColSpec("string", "function"), ColSpec("string", "fixed_code"),
                      ColSpec("string", "model_patch"), ColSpec("boolean", "changed"),
                      ColSpec("double", "change_probability"), ColSpec("double", "q_halt"),
                      ColSpec("boolean", "truncated"), ColSpec("string", "reason")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example() -> pd.DataFrame:
    return pd.DataFrame([{"problem_statement": "clamp returns high for values inside the range",
                          "file_path": "mathutil.py", "source": EXAMPLE_SOURCE,
                          "function": "clamp"}])


def requirements() -> list[str]:
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return out


def load_model_params(path: str | Path):
    """The resolved params saved with a model (its own profile, no override from the caller's
    environment)."""
    from hrm.config import parse_params

    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return parse_params(raw, raw.get("profile"), source=str(path))


class HrmRepairModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: one `hrm.repair.repair_source` per input row."""

    def load_context(self, context) -> None:
        from hrm.repairer import Repairer

        params = load_model_params(context.artifacts["params"])
        self.repairer = Repairer.load(context.artifacts["checkpoint"],
                                      context.artifacts["tokenizer"], params)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from hrm.repair import repair_source

        rows = []
        for rec in pd.DataFrame(model_input).to_dict(orient="records"):
            path = str(rec.get("file_path") or "input.py")
            function = rec.get("function") or None
            try:
                fix = repair_source(self.repairer, path, str(rec.get("source") or ""),
                                    function=function if isinstance(function, str) else None,
                                    issue=str(rec.get("problem_statement") or ""))
            except HrmError as err:
                rows.append({"function": function or "", "fixed_code": "", "model_patch": "",
                             "changed": False, "change_probability": float("nan"),
                             "q_halt": float("nan"), "truncated": False, "reason": str(err)})
                continue
            rows.append({"function": fix.function, "fixed_code": fix.fixed,
                         "model_patch": fix.patch, "changed": bool(fix.patch),
                         "change_probability": fix.change_probability, "q_halt": fix.q_halt,
                         "truncated": fix.truncated, "reason": fix.reason})
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def save_model(path: str | Path, checkpoint_file: Path, tokenizer_dir: Path, params) -> Path:
    """Write the MLflow Model directory for one checkpoint file (with its manifest), the
    tokenizer and the params. `path` must not exist yet."""
    import hrm

    checkpoint_file, tokenizer_dir = Path(checkpoint_file), Path(tokenizer_dir)
    manifest = checkpoint_file.with_suffix(".json")
    for need in (checkpoint_file, manifest):
        if not need.is_file():
            raise InputError("checkpoint file (or its manifest) not found", path=str(need))
    with tempfile.TemporaryDirectory(prefix="hrm-pyfunc-") as tmp:
        staged = Path(tmp)
        (staged / "checkpoint").mkdir()
        shutil.copy2(checkpoint_file, staged / "checkpoint" / checkpoint_file.name)
        shutil.copy2(manifest, staged / "checkpoint" / manifest.name)
        (staged / "params.yaml").write_text(
            yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        # the package's sources only (no bytecode caches): what the model needs to load
        shutil.copytree(Path(hrm.__file__).parent, staged / "code" / "hrm",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        mlflow.pyfunc.save_model(
            path=str(path), python_model=HrmRepairModel(),
            artifacts={"checkpoint": str(staged / "checkpoint"), "tokenizer": str(tokenizer_dir),
                       "params": str(staged / "params.yaml")},
            code_paths=[str(staged / "code" / "hrm")],
            signature=signature(), input_example=input_example(),
            pip_requirements=requirements())
    return Path(path)
