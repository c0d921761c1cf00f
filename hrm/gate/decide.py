"""The gate decision: every criterion of `gate.criteria` against the evaluation metrics.

PROMOTE only if every criterion passes on a present, finite value; otherwise FLAG, listing each
failing criterion with its value, threshold and gap. A FLAG is a result, written to `gate.json`
like a PROMOTE; the caller decides whether it is also an error (`--fail-on-flag`).
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from hrm.config import Criterion, GateConfig
from hrm.gate.inputs import load_eval_metrics

GATE_FILE = "gate.json"

Verdict = Literal["PROMOTE", "FLAG"]
Status = Literal["pass", "fail", "missing", "null", "non_finite"]

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class CriterionResult:
    """One criterion evaluated: `gap` is how far the value is from passing (0 when it passes)."""

    metric: str
    split: str
    op: str
    threshold: float
    value: float | None
    status: Status
    gap: float | None
    note: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def key(self) -> str:
        return f"{self.split}/{self.metric}"


@dataclass
class GateResult:
    """The verdict and the per-criterion table; serialised as `gate.json`."""

    verdict: Verdict
    criteria: list[CriterionResult]
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def failing(self) -> list[CriterionResult]:
        return [c for c in self.criteria if not c.passed]

    def counts(self) -> dict[str, int]:
        by_status = {s: sum(c.status == s for c in self.criteria) for s in ("pass", "fail", "missing", "null", "non_finite")}
        return {"total": len(self.criteria), "passed": by_status["pass"], "failed": len(self.failing), **{
            f"status_{k}": v for k, v in by_status.items()}}

    def to_json(self) -> dict:
        # Non-finite values cannot go into strict JSON: they are written as null, with the
        # status saying why (DVC reads this file as metrics).
        def clean(v: float | None) -> float | None:
            return v if v is not None and math.isfinite(v) else None

        rows = []
        for c in self.criteria:
            row = asdict(c)
            row["value"] = clean(c.value)
            row["passed"] = c.passed
            rows.append(row)
        return {
            "verdict": self.verdict,
            "promote": self.verdict == "PROMOTE",
            "counts": self.counts(),
            "criteria": rows,
            "failing": [f"{c.key} {c.op} {c.threshold:g}: {c.note}" for c in self.failing],
            "metrics": {s: {k: clean(v) for k, v in m.items()} for s, m in self.metrics.items()},
        }

    @classmethod
    def from_json(cls, raw: dict) -> GateResult:
        criteria = [
            CriterionResult(**{k: r[k] for k in CriterionResult.__dataclass_fields__}) for r in raw["criteria"]
        ]
        return cls(verdict=raw["verdict"], criteria=criteria, metrics=raw.get("metrics", {}))


def evaluate_criterion(criterion: Criterion, metrics: dict[str, float | None]) -> CriterionResult:
    """Compare one metric with its threshold; absent, null or non-finite values fail."""
    base = {"metric": criterion.metric, "split": criterion.split, "op": criterion.op, "threshold": criterion.threshold}
    if criterion.metric not in metrics:
        return CriterionResult(**base, value=None, status="missing", gap=None,
                               note=f"metric not in {criterion.split}/metrics.json")
    value = metrics[criterion.metric]
    if value is None:
        return CriterionResult(**base, value=None, status="null", gap=None,
                               note="metric is null (not computed or not applicable)")
    if not math.isfinite(value):
        return CriterionResult(**base, value=value, status="non_finite", gap=None, note=f"metric is {value}")
    if _OPS[criterion.op](value, criterion.threshold):
        return CriterionResult(**base, value=value, status="pass", gap=0.0, note="passes")
    # Distance still to cover: positive, in the metric's units.
    gap = abs(criterion.threshold - value)
    return CriterionResult(**base, value=value, status="fail", gap=gap,
                           note=f"{value:.4g} is not {criterion.op} {criterion.threshold:g} (gap {gap:.4g})")


def evaluate_criteria(gate: GateConfig, metrics: dict[str, dict[str, float | None]]) -> GateResult:
    """Evaluate all criteria on already-loaded metrics (per split)."""
    if not gate.criteria:
        # An empty gate would promote anything; that is a configuration mistake, not a pass.
        raise ValueError("gate.criteria is empty: nothing to decide on")
    results = [evaluate_criterion(c, metrics.get(c.split, {})) for c in gate.criteria]
    verdict: Verdict = "PROMOTE" if all(r.passed for r in results) else "FLAG"
    return GateResult(verdict=verdict, criteria=results, metrics=metrics)


def decide(gate: GateConfig, eval_dir: str | Path, out_dir: str | Path,
           extra_splits: list[str] | None = None) -> GateResult:
    """Read the metrics of every split the criteria use, decide, and write `out_dir/gate.json`.

    `extra_splits` are loaded too (kept in the result for the report, e.g. train for the
    overfitting rule) but never judged.
    """
    splits = sorted({c.split for c in gate.criteria} | set(extra_splits or []))
    result = evaluate_criteria(gate, load_eval_metrics(eval_dir, splits))
    write_gate_json(result, out_dir)
    return result


def write_gate_json(result: GateResult, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / GATE_FILE
    path.write_text(json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_gate_json(path: str | Path) -> GateResult:
    """Load a decision written by `decide` (for the separate promote/flag tasks)."""
    from hrm.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError("gate decision not found (run `hrm gate decide`)", path=str(path))
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return GateResult.from_json(raw)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(f"not a gate decision: {err}", path=str(path)) from None
