"""The whole gate step: decide, report, act on the registry, and log it all to MLflow.

`run_gate` is what `hrm gate` (and the DVC stage) runs. The KFP pipeline runs the same parts as
separate tasks: its gate task calls `run_gate(..., use_registry=False)` (decision, report and
tracking), then `registry.promote` or `registry.flag` on the decision it wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hrm.config import Params
from hrm.gate.decide import GateResult, decide
from hrm.gate.inputs import available_splits, load_history
from hrm.gate.registry import RegistryOutcome
from hrm.gate.report import ConvergenceReport, build_report, write_report
from hrm.gate.summary import HEADLINE

REGISTRY_FILE = "registry.json"


@dataclass
class GateOutcome:
    result: GateResult
    report: ConvergenceReport
    files: list[Path]
    registry: RegistryOutcome | None


def default_checkpoint(params: Params, train_dir: str | Path) -> Path:
    """`<train_dir>/<last phase>/checkpoints`, the candidate the pipeline produced."""
    if not params.train.phases:
        raise ValueError("train.phases is empty: no final phase to take the checkpoint from")
    return Path(train_dir) / params.train.phases[-1].name / "checkpoints"


def decide_and_report(params: Params, eval_dir: str | Path, train_dir: str | Path,
                      out_dir: str | Path) -> tuple[GateResult, ConvergenceReport]:
    """Write `gate.json`, then compute the report's contents (not yet rendered)."""
    # Train metrics feed the overfitting rule; they are loaded when present, never judged.
    extra = [s for s in ("train", "val", "test") if s in available_splits(eval_dir)]
    result = decide(params.gate, eval_dir, out_dir, extra_splits=extra)
    history = load_history(train_dir, [p.name for p in params.train.phases])
    report = build_report(params.gate, result, history, seed=params.gate.seed)
    return result, report


def write_registry_json(outcome: RegistryOutcome, out_dir: str | Path) -> Path:
    path = Path(out_dir) / REGISTRY_FILE
    path.write_text(json.dumps(outcome.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def act_on_decision(params: Params, result: GateResult, checkpoint: str | Path,
                    tokenizer: str | Path, out_dir: str | Path, *, action: str | None = None
                    ) -> RegistryOutcome:
    """The one path from a gate decision to the registry, for `hrm gate`, `hrm gate
    promote|flag` and the KFP branches: promote on PROMOTE, flag on FLAG (`action` "promote" or
    "flag" runs that branch, which refuses a decision of the other verdict), then `registry.json`
    in `out_dir` and, where `out_dir` holds the decision's `gate.json`, the action recorded in it
    (`record_registry_action`)."""
    from hrm.gate import registry

    run = {None: registry.act, "promote": registry.promote, "flag": registry.flag}[action]
    outcome = run(params, result, Path(checkpoint), Path(tokenizer))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "gate.json").is_file():
        record_registry_action(outcome, out)
    write_registry_json(outcome, out)
    return outcome


def outcome_markdown(outcome: RegistryOutcome, report: str = "") -> str:
    """What the registry did, as Markdown (the KFP branches' output), then the gate's report."""
    text = "# Registry\n\n" + "\n".join(f"- {line}" for line in outcome.lines()) + "\n"
    return text + ("\n" + report if report else "")


def record_registry_action(outcome: RegistryOutcome, out_dir: str | Path) -> None:
    """Add what the registry did to `gate.json`: a PROMOTE decision the champion guard
    blocked is not a promotion, and `promoted` (0/1, a DVC metric) says so."""
    path = Path(out_dir) / "gate.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["registry_action"] = outcome.action
    doc["promoted"] = int(outcome.action in ("promoted", "already_champion"))
    if outcome.action == "guard_blocked":
        doc["guard_blocked"] = outcome.reasons
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _log(result: GateResult, files: list[Path], out_dir: Path) -> None:
    """Log the decision's numbers and the report files to the active MLflow run."""
    import math

    import mlflow

    counts = result.counts()
    mlflow.log_metrics({"gate.promote": float(result.verdict == "PROMOTE"),
                        "gate.criteria_passed": counts["passed"], "gate.criteria_total": counts["total"]})
    for c in result.criteria:
        if c.value is not None and math.isfinite(c.value):
            mlflow.log_metric(f"gate.{c.split}.{c.metric}", c.value)
    mlflow.set_tags({"gate.verdict": result.verdict})
    for path in files:
        rel = path.relative_to(out_dir).parent.as_posix()
        mlflow.log_artifact(str(path), "gate" if rel == "." else f"gate/{rel}")


def run_gate(params: Params, eval_dir: str | Path, train_dir: str | Path, out_dir: str | Path, *,
             checkpoint: str | Path | None = None, tokenizer: str | Path | None = None,
             use_registry: bool = True, track: bool = True) -> GateOutcome:
    """Decide, report, and (with `use_registry`) promote or flag the checkpoint.

    `track=False` runs offline: no MLflow at all (and therefore no registry).
    """
    out = Path(out_dir)
    result, report = decide_and_report(params, eval_dir, train_dir, out)
    if not track:
        if use_registry:
            raise ValueError("the registry needs tracking: use_registry=True with track=False")
        return GateOutcome(result, report, write_report(report, out) + [out / "gate.json"], None)

    from hrm.gate import registry
    from hrm.tracking import step_run

    registry.use_experiment(params)
    outcome = None
    with step_run(params, "gate"):
        if use_registry:
            ckpt = Path(checkpoint) if checkpoint else default_checkpoint(params, train_dir)
            tok = Path(tokenizer) if tokenizer else Path(params.artifacts_dir) / "tokenizer"
            outcome = act_on_decision(params, result, ckpt, tok, out)
            report.registry_lines = outcome.lines()
        files = write_report(report, out) + [out / "gate.json"]
        if outcome is not None:
            files.append(out / REGISTRY_FILE)
        _log(result, files, out)
    _roll_up(params, result, outcome)
    return GateOutcome(result, report, files, outcome)


ROLLED_UP = (*(name for name, _ in HEADLINE), "loss")
"""The metrics of each split the parent run shows beside the verdict: the summary's headline
metrics (`hrm.gate.summary.HEADLINE`) and the loss."""


def _roll_up(params: Params, result: GateResult, outcome: RegistryOutcome | None) -> None:
    """The verdict and headline numbers on the pipeline's parent run (`hrm.tracking.roll_up`)."""
    from hrm.tracking import roll_up

    counts = result.counts()
    metrics = {"gate.promote": float(result.verdict == "PROMOTE"),
               "gate.criteria_passed": float(counts["passed"]),
               "gate.criteria_total": float(counts["total"])}
    for split, values in result.metrics.items():
        metrics.update({f"{split}.{k}": v for k, v in values.items() if k in ROLLED_UP
                        and v is not None})
    tags = {"hrm.gate.verdict": result.verdict, "hrm.gate.evidence": result.evidence[:5000]}
    if outcome is not None:
        tags["hrm.gate.registry_action"] = outcome.action
        tags["hrm.gate.model_version"] = f"{outcome.model_name}/{outcome.version}"
    roll_up(params, metrics=metrics, tags=tags)
