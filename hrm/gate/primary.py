"""The gate's repair rule (`gate.primary_metric`): the model must be shown to repair more than
every baseline evaluated beside it (docs/gate.md, the primary rule).

Copying the buggy code scores 0 on every repair metric (an unchanged prediction fails every
tier), so against copying the rule is the model's own bootstrap 95% interval lying above
copying's value. Against a baseline that repairs some rows (the unigram guess, the untrained
model decoded as the model is, the untrained model alone, the n-gram model alone) the evidence
is on the same rows: McNemar's exact test on the rows where the two differ, one-sided, p <=
0.025 (`hrm.eval.paired`; the p-value is recomputed from the two counts, never read). Metrics
from older evaluations carry no paired counts; then the model's own interval must lie above the
baseline's value (unpaired, said so in the note).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hrm.config import GateConfig
from hrm.eval.paired import SIGNIFICANCE, exact_sign_p
from hrm.gate.inputs import SplitExtras, discordant_counts, finite, json_number

BASELINE_NAMES = {"copy": "copying", "unigram": "the unigram guess",
                  "untrained": "the untrained model",
                  "untrained_alone": "the untrained model without the re-ranking",
                  "naturalness": "the n-gram model alone"}


@dataclass(frozen=True)
class PrimaryResult:
    """The repair rule: `metric` on `split` against copying and every other baseline."""

    metric: str
    split: str
    value: float | None
    ci95: tuple[float, float] | None
    baseline_copy: float | None
    passed: bool
    note: str
    baseline_untrained: float | None = None
    """None where metrics.json has no untrained baseline."""
    baselines: dict[str, float] = field(default_factory=dict)
    """Every baseline's value of `metric` (copy included)."""
    paired: dict[str, dict] = field(default_factory=dict)
    """Baseline -> {ci95, model_only, baseline_only, p_value} on the same rows, where measured."""


def _clears(name: str, ci: tuple[float, float], value: float, paired: dict | None) -> tuple[bool, str]:
    """Whether the model is shown above one baseline, and how it reads."""
    who = BASELINE_NAMES.get(name, name)
    if paired is not None:
        p = _paired_p(paired)
        low, high = paired["ci95"]
        return p <= SIGNIFICANCE, (f"{who} ({value:.3g}; {paired['model_only']} rows only the model gets, "
                                   f"{paired['baseline_only']} only the baseline, exact p = {p:.2g}; difference "
                                   f"[{low:.3g}, {high:.3g}])")
    return ci[0] > value, f"{who} ({value:.3g}{'' if name == 'copy' else ', unpaired'})"


def evaluate_primary(gate: GateConfig, metrics: dict[str, float | None],
                     extras: SplitExtras) -> PrimaryResult | None:
    """The repair rule on `gate.primary_split`; None when `gate.primary_metric` is off."""
    if gate.primary_metric is None:
        return None
    name = gate.primary_metric
    if name == "auto":
        name = "resolved_rate" if finite(metrics.get("resolved_rate")) else "exact_accuracy"
    value, ci = metrics.get(name), extras.intervals.get(name)
    values = {b: v[name] for b, v in sorted(extras.baselines.items()) if finite(v.get(name))}
    # copying is 0 on every row: the model's own interval is the test against it
    paired = {b: by_metric[name] for b, by_metric in extras.paired.items()
              if name in by_metric and b in values and b != "copy"}
    copy = values.get("copy")
    base = {"metric": name, "split": gate.primary_split, "value": value, "ci95": ci, "baseline_copy": copy,
            "baseline_untrained": values.get("untrained"), "baselines": values, "paired": paired}
    if ci is None:
        return PrimaryResult(**base, passed=False, note=f"no {name}_ci95 in metrics.json: not measured")
    if copy is None:
        return PrimaryResult(**base, passed=False,
                             note=f"no copy baseline for {name} in metrics.json: nothing to beat")
    checks = [_clears(b, ci, v, paired.get(b)) for b, v in values.items()]
    beaten = [how for ok, how in checks if ok]
    missed = [how for ok, how in checks if not ok]
    head = f"95% interval [{ci[0]:.3g}, {ci[1]:.3g}]"
    if not missed:
        return PrimaryResult(**base, passed=True, note=f"{head}; shown above " + ", ".join(beaten))
    return PrimaryResult(**base, passed=False,
                         note=f"{head}; not shown above " + ", ".join(missed)
                              + (f" (shown above {', '.join(beaten)})" if beaten else ""))


def _paired_p(pair: object) -> float:
    """The exact test's p from a paired entry's counts (never its own `p_value`); 1.0 where
    the counts are not whole numbers >= 0, so such an entry never clears the rule."""
    counts = discordant_counts(pair)
    return exact_sign_p(*counts) if counts is not None else 1.0


def primary_problems(p: PrimaryResult) -> tuple[bool, list[str]]:
    """Whether the rule holds by `p`'s own numbers, and what in `p` contradicts them (a
    decision read back from gate.json is re-derived, not trusted)."""
    ci = [json_number(v) for v in p.ci95] if isinstance(p.ci95, list | tuple) else []
    copy = json_number(p.baseline_copy)
    values = dict(p.baselines or {})
    if p.baseline_untrained is not None:
        values.setdefault("untrained", p.baseline_untrained)
    holds = len(ci) == 2 and all(finite(v) for v in ci) and finite(copy) and ci[0] > copy
    for name, value in values.items():
        pair = (p.paired or {}).get(name) if name != "copy" else None
        if pair is not None:
            holds = holds and _paired_p(pair) <= SIGNIFICANCE
        else:
            v = json_number(value)
            holds = holds and finite(v) and len(ci) == 2 and ci[0] > v
    problems = []
    if p.passed and not holds:
        problems.append(f"primary {p.split}/{p.metric} claims to pass with interval {p.ci95} "
                        f"against copying {p.baseline_copy}, the untrained model {p.baseline_untrained}"
                        + (f", baselines {values}" if values else "")
                        + (f" and paired counts {p.paired}" if p.paired else ""))
    return holds, problems


def primary_from_json(raw: dict) -> PrimaryResult:
    """`gate.json`'s `primary`, its shapes checked (a ValueError names what is wrong)."""
    baselines = raw.get("baselines") or {}
    paired = raw.get("paired") or {}
    if not isinstance(baselines, dict) or not all(json_number(v) is not None for v in baselines.values()):
        raise ValueError(f"primary.baselines must map baselines to numbers, got {baselines!r}")
    if not isinstance(paired, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("ci95"), list | tuple) and len(v["ci95"]) == 2
            for v in paired.values()):
        raise ValueError(f"primary.paired must map baselines to {{ci95, model_only, baseline_only}}, got {paired!r}")
    ci = raw.get("ci95")
    known = {k: raw[k] for k in PrimaryResult.__dataclass_fields__ if k in raw}
    return PrimaryResult(**{**known, "ci95": tuple(ci) if ci is not None else None,
                            "paired": {b: {**v, "ci95": tuple(v["ci95"])} for b, v in paired.items()}})
