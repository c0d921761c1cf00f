"""The few lines `make run` ends with: the gate's verdict, the primary repair metric against
copying, and each evaluated split's headline numbers beside the copy and unigram baselines
(where a reader would otherwise face `dvc metrics show`'s 190-column table).

A number with no baseline beside it says nothing (a do-nothing model reaches some), so every
repair metric is shown with what copying the buggy code and the unigram guess score.
"""

from __future__ import annotations

from pathlib import Path

from hrm.errors import InputError

HEADLINE = (("exact_accuracy", "exact"), ("resolved_rate", "resolved"),
            ("resolved_after_search", "after search"), ("token_accuracy_all", "token acc"))


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _load(path: Path) -> dict:
    from hrm.json_input import read_json_strict

    raw = read_json_strict(path, missing="not found (run `dvc repro` or `make run` first)")
    if not isinstance(raw, dict):
        raise InputError("expected a JSON object", path=str(path))
    return raw


def summary_lines(gate_dir: str | Path, eval_dir: str | Path) -> list[str]:
    """The summary of a finished run (gate_dir/gate.json, eval_dir/<split>/metrics.json)."""
    gate_dir, eval_dir = Path(gate_dir), Path(eval_dir)
    gate = _load(gate_dir / "gate.json")
    counts = gate.get("counts", {})
    lines = [f"gate: {gate['verdict']} ({counts.get('passed', '?')}/{counts.get('total', '?')} "
             f"criteria met; registry: {gate.get('registry_action') or 'not run'}); "
             f"report: {gate_dir / 'report.md'} (self-contained: {gate_dir / 'report.html'}); "
             "curves: `dvc plots show`"]
    primary = gate.get("primary")
    if primary:
        ci = primary.get("ci95") or [None, None]
        against = primary.get("baselines") or {"copy": primary.get("baseline_copy"),
                                                "untrained": primary.get("baseline_untrained")}
        paired = primary.get("paired") or {}
        vs = ", ".join(f"{name} {_num(v)}" + (f" ({paired[name]['model_only']:.0f} : {paired[name]['baseline_only']:.0f} "
                                              f"rows, p = {paired[name]['p_value']:.2g})" if name in paired else "")
                       for name, v in against.items())
        lines.append(f"primary {primary['metric']} ({primary['split']}): {_num(primary['value'])} "
                     f"[{_num(ci[0])}, {_num(ci[1])}] vs {vs}"
                     f": {'met' if primary.get('passed') else 'NOT met'}")
    for line in gate.get("failing", [])[:4]:
        lines.append(f"  failing: {line}")
    left_out = gate.get("left_out") or {}
    for why in left_out.values():
        lines.append(f"  left out: {why}")
    for split_dir in sorted(p for p in eval_dir.iterdir() if (p / "metrics.json").is_file()
                            and p.name not in left_out) if eval_dir.is_dir() else []:
        m = _load(split_dir / "metrics.json")
        base = m.get("baselines", {})
        parts = []
        for key, label in HEADLINE:
            if m.get(key) is None:
                continue
            ref = ", ".join(f"{name} {_num(base[name][key])}" for name in ("copy", "unigram", "untrained")
                            if base.get(name, {}).get(key) is not None)
            parts.append(f"{label} {_num(m[key])}" + (f" ({ref})" if ref else ""))
        rows = int(m.get("rows") or 0)
        lines.append(f"{split_dir.name} ({rows} rows): " + "; ".join(parts))
    return lines
