"""The gate decision: every criterion of `gate.criteria` against the evaluation metrics.

PROMOTE only if every criterion passes on a present, finite value AND the model is shown to
repair more than every baseline evaluated beside it (`hrm.gate.primary`: the primary repair
metric's 95% interval above copying, and against the unigram guess, the untrained model with and
without the n-gram re-ranking and the n-gram model alone, McNemar's exact test on the same rows,
one-sided p <= 0.025), or, with that rule off, at least one passing criterion is one the copy
baseline fails. Each criterion carries the copy and unigram baselines' values and
`informative: false` when copying meets it too (such a criterion is no evidence of repair).
Otherwise FLAG, listing each failing criterion with its value, threshold and gap. A FLAG is a result, written to `gate.json`
like a PROMOTE; the caller decides whether it is also an error (`--fail-on-flag`).
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from hrm.config import Criterion, GateConfig
from hrm.errors import InputError
from hrm.gate.inputs import SplitExtras, finite, json_number, load_eval_metrics, load_split_extras
from hrm.gate.primary import PrimaryResult, evaluate_primary, primary_from_json, primary_problems

GATE_FILE = "gate.json"

Verdict = Literal["PROMOTE", "FLAG"]
Status = Literal["pass", "fail", "missing", "null", "non_finite", "not_measured"]

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
    baseline_copy: float | None = None
    """The copy baseline's value of the metric on the split (None: metrics.json has none)."""
    baseline_unigram: float | None = None
    baseline_untrained: float | None = None
    """The untrained model of the same shape (it picks a rewrite of the buggy code at random)."""
    informative: bool = True
    """False when the copy baseline meets the criterion too: passing it shows no repair."""

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
    primary: PrimaryResult | None = None
    """None when `gate.primary_metric` is off."""
    evidence: str = ""
    """Why the result does or does not show a repair beyond copying (the verdict's second half)."""
    checkpoint_sha256: str | None = None
    """The checkpoint the judged metrics were measured on (from metrics.json); a promotion
    registers only that checkpoint (`hrm.gate.registry.promote`)."""
    left_out: dict[str, str] = field(default_factory=dict)
    """Report-only splits left out because they were measured on another checkpoint: why."""

    @property
    def failing(self) -> list[CriterionResult]:
        return [c for c in self.criteria if not c.passed]

    def counts(self) -> dict[str, int]:
        by_status = {s: sum(c.status == s for c in self.criteria) for s in ("pass", "fail", "missing", "null", "non_finite", "not_measured")}
        return {"total": len(self.criteria), "passed": by_status["pass"], "failed": len(self.failing),
                "informative": sum(c.informative for c in self.criteria), **{
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
            "failing": [f"{c.key} {c.op} {c.threshold:g}: {c.note}" for c in self.failing]
            + ([f"primary {self.primary.split}/{self.primary.metric}: {self.primary.note}"]
               if self.primary is not None and not self.primary.passed else []),
            "primary": asdict(self.primary) if self.primary is not None else None,
            "evidence": self.evidence,
            "checkpoint_sha256": self.checkpoint_sha256,
            "left_out": self.left_out,
            "metrics": {s: {k: clean(v) for k, v in m.items()} for s, m in self.metrics.items()},
        }

    @classmethod
    def from_json(cls, raw: dict) -> GateResult:
        criteria = [
            CriterionResult(**{k: r[k] for k in CriterionResult.__dataclass_fields__ if k in r})
            for r in raw["criteria"]
        ]
        primary = raw.get("primary")
        if primary is not None:
            primary = primary_from_json(primary)
        return cls(verdict=raw["verdict"], criteria=criteria, metrics=raw.get("metrics", {}),
                   primary=primary, evidence=raw.get("evidence", ""),
                   checkpoint_sha256=raw.get("checkpoint_sha256"),
                   left_out=dict(raw.get("left_out") or {}))


def with_baselines(result: CriterionResult, criterion: Criterion, extras: SplitExtras) -> CriterionResult:
    """The criterion's row with the copy, unigram and untrained values, and whether copying
    meets it."""
    copy = extras.baselines.get("copy", {}).get(criterion.metric)
    unigram = extras.baselines.get("unigram", {}).get(criterion.metric)
    untrained = extras.baselines.get("untrained", {}).get(criterion.metric)
    informative = not (finite(copy) and _OPS[criterion.op](copy, criterion.threshold))
    note = result.note
    if result.passed and not informative:
        note = f"passes, but copying the buggy code passes too ({copy:.4g}): not evidence of repair"
    return replace(result, baseline_copy=copy, baseline_unigram=unigram, baseline_untrained=untrained,
                   informative=informative,
                   note=note)


def with_context(result: CriterionResult, metrics: dict[str, float | None],
                 extras: SplitExtras) -> CriterionResult:
    """A null metric the evaluation says it did not measure reads `not_measured` with the reason
    (it still fails); the paired reverse-learning ablation's note gives its rows and p-value."""
    if result.status == "null" and result.metric in extras.not_measured:
        return replace(result, status="not_measured",
                       note=f"not measured: {extras.not_measured[result.metric]}")
    if result.metric == "reverse_learning_integration" and result.value is not None:
        lower, higher = metrics.get("reverse_learning_rows_lower"), metrics.get("reverse_learning_rows_higher")
        p = metrics.get("reverse_learning_p_value")
        if lower is not None and higher is not None and p is not None:
            return replace(result, note=f"{result.note}; against the control model (feedback path "
                           f"off, same data, seed and epochs): lower loss on {lower:.0f} rows, higher "
                           f"on {higher:.0f}, sign test p = {p:.3g}")
    return result


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


def evaluate_criteria(gate: GateConfig, metrics: dict[str, dict[str, float | None]],
                      extras: dict[str, SplitExtras] | None = None) -> GateResult:
    """Evaluate all criteria on already-loaded metrics (per split) and their baselines."""
    if not gate.criteria:
        # An empty gate would promote anything; that is a configuration mistake, not a pass.
        raise ValueError("gate.criteria is empty: nothing to decide on")
    extras = extras or {}
    results = [with_context(with_baselines(evaluate_criterion(c, metrics.get(c.split, {})), c,
                                           extras.get(c.split, SplitExtras())),
                            metrics.get(c.split, {}), extras.get(c.split, SplitExtras()))
               for c in gate.criteria]
    primary = evaluate_primary(gate, metrics.get(gate.primary_split, {}),
                               extras.get(gate.primary_split, SplitExtras()))
    if primary is not None:
        evidence = primary.note
        shown = primary.passed
    else:
        shown = any(r.passed and r.informative for r in results)
        evidence = ("a passing criterion that copying the buggy code fails" if shown else
                    "every passing criterion is met by copying the buggy code too: no evidence of repair")
    verdict: Verdict = "PROMOTE" if all(r.passed for r in results) and shown else "FLAG"
    judged = sorted({c.split for c in gate.criteria}
                    | ({gate.primary_split} if primary is not None else set()))
    shas = [extras.get(s, SplitExtras()).checkpoint_sha256 for s in judged]
    if len({sha for sha in shas if sha is not None}) > 1:
        named = ", ".join(f"{s}: {sha}" for s, sha in zip(judged, shas, strict=True))
        raise InputError(f"the judged splits were measured on different checkpoints ({named}): "
                         "evaluate every split on the one candidate")
    # One split that does not name its checkpoint leaves the decision's checkpoint unknown: it
    # can FLAG, never promote.
    known = shas[0] if shas and None not in shas else None
    return GateResult(verdict=verdict, criteria=results, metrics=metrics, primary=primary,
                      evidence=evidence, checkpoint_sha256=known)


def decision_problems(result: GateResult) -> list[str]:
    """What in a decision does not follow from its own numbers (empty: it holds).

    A decision read back from gate.json is input like any other: `promote` re-derives each
    criterion's status from its value, operator and threshold, whether copying meets it from
    its copy baseline, the primary rule from its interval, and the verdict from those, instead
    of trusting the `passed`/`verdict` fields.
    """
    problems = []
    if not result.criteria:
        problems.append("it has no criteria: nothing was judged")
    all_pass, shown = bool(result.criteria), False
    for c in result.criteria:
        if c.op not in _OPS:
            problems.append(f"{c.key}: unknown operator {c.op!r}")
            all_pass = False
            continue
        value, threshold, copy = json_number(c.value), json_number(c.threshold), json_number(c.baseline_copy)
        holds = finite(value) and finite(threshold) and _OPS[c.op](value, threshold)
        if c.passed and not holds:
            problems.append(f"{c.key} claims to pass with value {c.value!r} {c.op} {c.threshold!r}")
        copy_meets = finite(copy) and finite(threshold) and _OPS[c.op](copy, threshold)
        all_pass = all_pass and holds
        shown = shown or (holds and not copy_meets)
    if result.primary is not None:
        shown, wrong = primary_problems(result.primary)
        problems += wrong
    if result.verdict == "PROMOTE" and not (all_pass and shown):
        problems.append("its verdict PROMOTE does not follow from its criteria"
                        + ("" if all_pass else " (not all of them pass)")
                        + ("" if shown else " (no evidence of repair beyond copying)"))
    return problems


def decide(gate: GateConfig, eval_dir: str | Path, out_dir: str | Path,
           extra_splits: list[str] | None = None) -> GateResult:
    """Read the metrics of every split the criteria use, decide, and write `out_dir/gate.json`.

    `extra_splits` are loaded too (kept in the result for the report, e.g. train for the
    overfitting rule) but never judged.
    """
    judged = {c.split for c in gate.criteria} | ({gate.primary_split} if gate.primary_metric else set())
    splits = sorted(judged | set(extra_splits or []))
    result = evaluate_criteria(gate, load_eval_metrics(eval_dir, splits),
                               {s: load_split_extras(eval_dir, s) for s in sorted(judged)})
    # Report-only splits of another model (e.g. a train evaluation left from an earlier run)
    # would mislead the report's rules: leave them out, and say so.
    for split in sorted(set(extra_splits or []) - judged):
        sha = load_split_extras(eval_dir, split).checkpoint_sha256
        if result.checkpoint_sha256 is not None and sha != result.checkpoint_sha256:
            result.metrics.pop(split, None)
            result.left_out[split] = (f"{split}/metrics.json was measured on checkpoint "
                                      f"{(sha or 'unknown')[:16]}, not the candidate "
                                      f"{result.checkpoint_sha256[:16]}: left out of the report")
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
    from hrm.json_input import read_json_strict

    raw = read_json_strict(path, missing="gate decision not found (run `hrm gate decide`)")
    try:
        if raw.get("verdict") not in ("PROMOTE", "FLAG"):
            raise ValueError(f"verdict must be PROMOTE or FLAG, got {raw.get('verdict')!r}")
        return GateResult.from_json(raw)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise InputError(f"not a gate decision: {err}", path=str(path)) from None
