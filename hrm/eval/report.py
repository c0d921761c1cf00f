"""`report.md` of an evaluation: model vs baselines, search vs greedy, breakdowns, ablation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_TABLE = (
    "exact_accuracy", "resolved_rate", "token_accuracy_all", "edit_accuracy", "location_accuracy",
    "code_syntax_validity", "code_compilation_success", "code_ast_match", "code_tiered_accuracy",
    "loss", "abstained_rows", "code_rows_excluded", "code_rows_file_context", "resolved_rows_without_env",
    "random_rewrite_exact_accuracy",
)
_SEARCH = (
    "greedy_pass_rate", "swe_search_score", "resolved_after_search", "exact_after_search",
    "swe_search_candidates", "swe_search_iterations", "swe_search_convergence_rate",
    "swe_search_efficiency", "swe_search_rows_static", "fix_in_search_candidates",
)


_NATURALNESS_NOTE = (
    "The model's greedy fix is its best rewrite re-ranked by an n-gram model of the corpus and "
    "the row's repository, kept only where that model finds it more natural than the buggy "
    "code (`abstained_rows`: the rows left unchanged; `eval.naturalness`). `naturalness` is "
    "that n-gram model alone ranking the same rewrites, and `untrained` is decoded the same "
    "way as the model, so the model's lead over both is what the HRM adds. `untrained_alone` is "
    "the untrained model without the re-ranking (its own pick: a random rewrite, always applied); "
    "`random_rewrite_exact_accuracy` is the exact rate a uniformly random rewrite has in "
    "expectation.")


def _hrm_alone_line(metrics: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """The ablation of the naturalness re-ranking, one sentence (none when it is off)."""
    alone = metrics.get("hrm_alone")
    if not alone:
        return []
    return [f"Without the naturalness re-ranking (the HRM's own best rewrite, always applied): "
            f"exact_accuracy {_fmt(alone.get('exact_accuracy'))}, resolved_rate "
            f"{_fmt(alone.get('resolved_rate'))}, token_accuracy_all "
            f"{_fmt(alone.get('token_accuracy_all'))} (copying {_fmt(base['copy'].get('token_accuracy_all'))}).",
            ""]


def _paired_table(metrics: dict[str, Any]) -> list[str]:
    """The model minus each baseline on the same rows (`hrm.eval.paired`)."""
    paired = metrics.get("paired") or {}
    rows = [(name, metric, d) for name, by_metric in paired.items() for metric, d in by_metric.items()]
    if not rows:
        return []
    return ["## Paired with each baseline", "",
            "| baseline | metric | model - baseline | 95% interval | rows only the model gets | "
            "rows only the baseline gets | exact p |", "|---|---|---|---|---|---|---|",
            *[f"| {name} | {metric} | {d['difference']:+.4f} | {_fmt(d['ci95'])} | {int(d['model_only'])} "
              f"| {int(d['baseline_only'])} | {d['p_value']:.3g} |" for name, metric, d in rows],
            "", "Both systems are scored on the same rows. The interval resamples rows (bootstrap; "
            "descriptive); `exact p` is McNemar's exact test on the rows where the two differ, "
            "one-sided: the gate counts the model as ahead of a baseline only at p <= 0.025 "
            "(a bootstrap interval above 0 with few differing rows is not enough).", ""]


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _within_table(metrics: dict[str, Any]) -> list[str]:
    """Resolved within the first k candidates, the model beside the baselines' searches."""
    curves = {"model": metrics.get("resolved_within") or {}}
    curves.update({name: v.get("resolved_within") for name, v in metrics["baselines"].items()
                   if v.get("resolved_within")})
    if not curves["model"]:
        return []
    if "tests" not in str(metrics.get("swe_search_verifier", "")).split("+"):
        return ["Resolved within k candidates: not measured (no row's search ran the tests).", ""]
    ks = sorted(curves["model"], key=int)
    names = list(curves)
    lines = ["### Resolved within the first k candidates", "",
             "| k | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(_fmt(curves[n].get(k)) for n in names) + " |" for k in ks]
    return lines + ["", "Where the untrained model's column comes close to the model's, the "
                    "candidate space and the tests find the fix, not the model's ranking.", ""]


def write_report(path: Path, split: str, metrics: dict[str, Any], info: dict[str, Any],
                 reverse: bool) -> None:
    """Write the markdown report; every number comes from `metrics` (nothing recomputed)."""
    base = metrics["baselines"]
    names = [b for b in ("copy", "unigram", "untrained", "untrained_alone", "naturalness") if b in base]
    searched = [b for b in ("unigram", "untrained", "naturalness") if b in base]
    rows = metrics.get("rows")
    lines = [f"# Evaluation: split `{split}`", "", f"Checkpoint: `{info.get('checkpoint')}` "
             f"(phase {info.get('phase')}, step {info.get('step')}, {info.get('weights')} "
             f"weights); rows: {'n/a' if rows is None else int(rows)}.", "",
             "## Model vs baselines", "",
             f"exact_accuracy 95% interval: {_fmt(metrics.get('exact_accuracy_ci95'))}; "
             f"resolved_rate 95% interval: {_fmt(metrics.get('resolved_rate_ci95'))} "
             "(bootstrap over rows).", "",
             "| metric | model | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for name in _TABLE:
        lines.append(f"| {name} | {_fmt(metrics.get(name))} | "
                     + " | ".join(_fmt(base[b].get(name)) for b in names) + " |")
    lines += ["", "Copying the buggy code scores high on token accuracy (most positions keep their "
              "token) and 0 on every repair metric: an unchanged output is not a repair and fails "
              "every code tier. A number a baseline also reaches is no evidence of repair. "
              + _NATURALNESS_NOTE * ("naturalness" in base), "", *_hrm_alone_line(metrics, base),
              *_paired_table(metrics),
              f"## SWE-search vs greedy (verifier: {metrics.get('swe_search_verifier', 'n/a')})", "",
              "| metric | model | " + " | ".join(f"{b}'s candidates" for b in searched) + " |",
              "|---" * (len(searched) + 2) + "|"]
    lines += [f"| {n} | {_fmt(metrics.get(n))} | " + " | ".join(_fmt(base[b].get(n)) for b in searched)
              + " |" for n in _SEARCH]
    lines += ["", "With the `tests` verifier the search is pass@k with test feedback: the tests "
              "that define `resolved_rate` choose among the model's own candidates. Its baselines "
              "are the same search over the untrained model's candidates (the rewrites of the "
              "buggy code in random order; `eval.search.untrained_baseline`) and over the unigram "
              "guess's (single edits at the positions whose token changes most often in training; "
              "`eval.search.unigram_baseline`). "
              "`fix_in_search_candidates` is the search's ceiling with a perfect verifier: the "
              "reference among the candidates it would check. The untrained model's candidates "
              "are the rewrites of the buggy code in random order, so its value is what the "
              "candidate space gives without any learning.", ""]
    lines += _within_table(metrics)
    table = metrics.get("breakdown") or {}
    for axis, title in (("inferable", "Inferable or not"), ("repo", "By repository"),
                        ("kind", "By bug kind")):
        entries = table.get(axis) or {}
        if not entries:
            continue
        lines += [f"## {title}", "", "| group | rows | exact | resolved | resolved after search "
                  "| token accuracy | copying's |", "|---|---|---|---|---|---|---|"]
        for name, e in entries.items():
            lines.append(f"| {name} | {int(e['rows'])} | {_fmt(e['exact_accuracy'])} | "
                         f"{int(e['resolved'])} | {int(e.get('resolved_after_search', 0))} | "
                         f"{_fmt(e.get('token_accuracy'))} | {_fmt(e.get('copy_token_accuracy'))} |")
        lines.append("")
    lines += ["## Reverse-learning ablation", ""]
    if not reverse:
        lines.append("Not applicable: the model has no L->H feedback path "
                     "(model.reverse_feedback false).")
    else:
        share = metrics.get("reverse_learning_integration")
        if share is None:
            why = (metrics.get("not_measured") or {}).get("reverse_learning_integration", "no control model")
            lines.append(f"reverse_learning_integration: not measured ({why}).")
        else:
            lower = int(metrics.get("reverse_learning_rows_lower") or 0)
            higher = int(metrics.get("reverse_learning_rows_higher") or 0)
            lines.append(
                f"Paired against the control model (the same phases, data, seed and epochs with the "
                f"feedback path off): the model's loss is lower on {lower} rows and higher on "
                f"{higher} (ties count half): reverse_learning_integration {_fmt(share)}, sign test "
                f"p = {_fmt(metrics.get('reverse_learning_p_value'))}; 0.5 is no effect. Loss: "
                f"model {_fmt(metrics.get('loss'))}, control {_fmt(metrics.get('reverse_learning_control_loss'))}.")
        lines += ["", "| metric | value |", "|---|---|"] + [
            f"| {n} | {_fmt(metrics.get(n))} |" for n in
            ("reverse_learning_integration", "reverse_learning_p_value", "reverse_gate_off_share",
             "reverse_integration_gate", "reverse_planning_refinement")]
        lines += ["", "reverse_gate_off_share: share of rows with lower loss with the feedback than "
                  "with its gate forced to 0 in the same trained model. It shows how much the model "
                  "leans on the path it was trained with (about 1 for any trained component), not "
                  "whether training with it helped: that is the paired comparison above."]
    lines += ["", "## ACT and Q head", "", "| metric | value |", "|---|---|"] + [
        f"| {n} | {_fmt(metrics.get(n))} |" for n in
        ("act_mean_steps", "q_halt_accuracy", "q_halt_balanced_accuracy")]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
