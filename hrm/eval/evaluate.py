"""The evaluate step: checkpoint + tokenizer + sequences (+ instances for environments) ->
`predictions.jsonl`, `metrics.json` and `report.md` in `out_dir`, logged to MLflow.

`metrics.json` is flat at the top level for the model (names in `metric_names.py`), with the
baselines nested under `baselines.{copy,unigram,untrained}`, the per-kind / per-repo tables
under `breakdown` and the search's curve under `resolved_within` ({k: rate}, also per
baseline). Null means not applicable or not computed.
"""

from __future__ import annotations

import collections
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hrm.config import Params
from hrm.eval.execution import ExecutionTier
from hrm.eval.metrics import breakdown, q_halt_metrics, row_metrics
from hrm.eval.rows import RowResult, RowScorer

Outputs = dict[int, tuple[int, ...]]


def load_instances(path: str | Path | None) -> dict[str, Any]:
    from hrm.data.instance import read_instances

    if path is None:
        return {}
    return {inst.instance_id: inst for inst in read_instances(path)}


def evaluate(params: Params, checkpoint: str | Path, tokenizer_dir: str | Path,
             sequences_dir: str | Path, split: str, out_dir: str | Path,
             instances_path: str | Path | None = None, *,
             train_sequences_dir: str | Path | None = None, label: str | None = None,
             control_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the whole evaluation of `split`; returns the metrics written to metrics.json.

    `control_dir` (`hrm train-control`'s output) gives the reverse-learning control model: the
    model's per-row losses are compared with its (`reverse_learning_integration`); None, or a
    control record saying none was trained, leaves the metric null and "not measured".

    `train_sequences_dir` (default: `sequences_dir`) holds the train split the unigram baseline
    is fitted on; `label` (default: `split`) names the run in the report and MLflow (transfer
    evaluation scores the `test` split of separately built sequences as `transfer`).

    The device is resolved like training's (`train.device: auto` = cuda when available, else
    cpu; `cuda` without a device is an error). A checkpoints directory means its newest
    checkpoint, which must verify. Sequences built with another tokenizer, a checkpoint trained
    with another tokenizer (or recording none), or on sequences of another shape, are refused
    rather than scored.
    """
    from hrm.errors import InputError
    from hrm.eval.baselines import fit_unigram
    from hrm.model.inference import unwrap
    from hrm.sequences import check_tokenizer, load_split
    from hrm.tokenizer import load_tokenizer
    from hrm.train.checkpoint import load_for_inference, sha256_file
    from hrm.train.device import resolve_device

    cfg = params.eval
    if instances_path is not None and not Path(instances_path).is_file():
        raise InputError("instances file not found (pass --no-instances to skip the test tier)",
                         path=str(instances_path))
    tok = load_tokenizer(tokenizer_dir)
    data = load_split(sequences_dir, split)
    if len(data) == 0:
        raise InputError(f"split {split!r} has no rows", path=str(sequences_dir))
    check_tokenizer(sequences_dir, data.meta, tokenizer_dir, tok.fingerprint)
    model, info = load_for_inference(checkpoint, resolve_device(params.train.device))
    if info.tokenizer_fingerprint != tok.fingerprint:
        recorded = info.tokenizer_fingerprint or "(none: trained without a tokenizer directory)"
        raise InputError(f"checkpoint was trained with another tokenizer: it records tokenizer "
                         f"fingerprint {recorded}, {Path(tokenizer_dir) / 'tokenizer.json'} has "
                         f"{tok.fingerprint}", path=info.path)
    net = unwrap(model)
    if (info.seq_len, info.vocab_size, net.slots) != (data.meta.seq_len, data.meta.vocab_size,
                                                      data.meta.slots):
        raise InputError(f"checkpoint expects seq_len={info.seq_len}, vocab={info.vocab_size}, "
                         f"slots={net.slots}; sequences have {data.meta.seq_len}, "
                         f"{data.meta.vocab_size}, {data.meta.slots}", path=str(sequences_dir))
    from hrm.eval.control import LoadedControl, load_control

    control = (load_control(control_dir, info, resolve_device(params.train.device)) if control_dir is not None
               else LoadedControl(reason="no control model was given (hrm evaluate --control)"))
    execution = None
    if instances_path is not None:
        execution = ExecutionTier(params.envs, load_instances(instances_path),
                                  cfg.max_pass_to_pass,
                                  allow_unconfined=cfg.allow_unconfined_execution,
                                  timeout_factor=cfg.timeout_factor, timeout_min_s=cfg.timeout_min_s)
    scorer = RowScorer(cfg.tier_weights, execution, cfg.run_tests)
    train_dir = Path(train_sequences_dir) if train_sequences_dir is not None else Path(sequences_dir)
    train_split = load_split(train_dir, "train")
    check_tokenizer(train_dir, train_split.meta, tokenizer_dir, tok.fingerprint)
    if len(train_split) == 0:
        raise InputError("the train split is empty: no unigram baseline (pass the training "
                         "sequences as train_sequences_dir)", path=str(train_dir))
    unigram = fit_unigram(train_split, delete_id=tok.mask_id, end_id=tok.eos_id)
    from hrm.eval.fusion import reranks

    naturalness = None
    if reranks(cfg):
        from hrm.naturalness import base_model

        naturalness = base_model(tokenizer_dir, cfg.naturalness.order)
    return evaluate_loaded(params, model, data, tok, scorer, out_dir, unigram=unigram,
                           naturalness=naturalness,
                           model_info={"checkpoint": info.path,
                                       "checkpoint_sha256": sha256_file(Path(info.path)),
                                       "step": info.step,
                                       "phase": info.phase, "weights": info.weights,
                                       "reverse_feedback": bool(net.cfg.reverse_feedback)},
                           split=label or split, control=control)


def _parallel(fn, items, workers: int, desc: str) -> list:
    """`fn` over `items` in `workers` threads (test runs are sandboxed subprocesses), in order."""
    bar = tqdm(total=len(items), desc=desc, unit="row", leave=False)
    out: list = [None] * len(items)

    def run(k: int):
        out[k] = fn(items[k])
        bar.update(1)

    if workers <= 1:
        for k in range(len(items)):
            run(k)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, range(len(items))))
    bar.close()
    return out


def untrained_model(params: Params, model):
    """A model of the same shape and config with fresh weights (seeded by `train.seed`)."""
    import torch

    from hrm.model import build_model
    from hrm.model.inference import unwrap

    net = unwrap(model)
    state = torch.random.get_rng_state()
    torch.manual_seed(params.train.seed)
    try:
        fresh = build_model(net.cfg, net.vocab_size, net.seq_len, next(net.parameters()).device,
                            net.slots, net.max_insertions)
    finally:
        torch.random.set_rng_state(state)
    return fresh.eval()


def _row_search(data, scorer: RowScorer, decode, buggy_texts: list, search_cfg):
    """`search_over(i, candidates)`: the search of row i over `candidates` (the greedy first).
    Verdicts are kept per row and candidate text, shared by the model's search and the
    baselines': the same code gets the same (seeded, sandboxed) test run, so it runs once."""
    from hrm.eval.decoding import special_tokens_of
    from hrm.eval.search import search_row, verify

    verdicts: dict[int, dict[tuple, Any]] = collections.defaultdict(dict)

    def search_over(i: int, cands: list[Outputs]):
        ctx = scorer.context(data.records[i])
        memo = verdicts[i]

        def check(hunks):
            key = (tuple(hunks), special_tokens_of(hunks))
            if key not in memo:
                memo[key] = verify(ctx, hunks, scorer, buggy_texts[i])
            return memo[key]

        return search_row(cands, lambda outs: decode(i, outs), check, search_cfg)

    return search_over


def search_candidates(prop, budget: int, max_edits: int | None) -> list[Outputs]:
    """What the search checks for a row, in order: the greedy fix, then the model's next
    candidates, `budget` in all."""
    greedy = prop.greedy(max_edits)
    return [greedy] + [c for c, _ in prop.candidates(budget, max_edits) if c != greedy][: budget - 1]


def _searched(search, n: int, workers: int, label: str, ref_texts: list, budget: int
              ) -> tuple[dict[str, Any], list[bool]]:
    """A baseline's search over its own candidates (`search(i)` per row): the metrics shown
    beside the model's, and per row whether the search resolved it."""
    from hrm.eval.search import search_metrics

    outcomes = _parallel(search, list(range(n)), workers, label)
    found = search_metrics(outcomes, [list(o.best_hunks) == ref_texts[i] for i, o in enumerate(outcomes)],
                           budget)
    return ({k: found[k] for k in ("resolved_after_search", "exact_after_search", "swe_search_candidates",
                                   "resolved_within")}, resolved_by_search(outcomes))


def resolved_by_search(outcomes) -> list[bool]:
    """Per row: the search found a candidate the row's own tests pass."""
    return [bool(o.best_passes and o.verifier == "tests") for o in outcomes]


def row_outcomes(rows: list[RowResult], tests: bool) -> dict[str, list[bool]]:
    """Per-row outcomes of one system's greedy fixes, for the paired comparison
    (`hrm.eval.paired`): exact always, resolved where `row_metrics` defines `resolved_rate`."""
    out = {"exact_accuracy": [bool(r.exact) for r in rows]}
    if tests and any(r.has_env for r in rows):
        out["resolved_rate"] = [r.resolved is True for r in rows]
    return out


def baseline_metrics(params: Params, model, data, unigram, score_all, search_over, *, tests: bool,
                     pass_kw: dict, budget: int, ref_texts: list, workers: int,
                     fix_share, fuse_all, is_fix) -> tuple[dict[str, Any], dict[str, dict[str, list[bool]]]]:
    """The baselines every metric is shown beside: copying the buggy code, the unigram guess
    (with the same search over its own candidates when tests run), the untrained model of the
    same shape (decoded as the model is, the n-gram re-ranking included) and, with
    `eval.naturalness`, the untrained model without it (`untrained_alone`: its own pick, a
    random rewrite, beside the expected exact rate of a uniformly random one) and the n-gram
    model alone ranking the same rewrites. `score_all(name, outputs)` and `search_over(i,
    candidates)` are the model's own scorer and search, `fix_share(candidates per row)` its
    `fix_in_search_candidates`, `fuse_all` its re-ranking and `is_fix(i, outputs)` its exact
    match, so the numbers compare by construction. Returns the baselines' metrics and
    their per-row outcomes (`row_outcomes`, plus `resolved_after_search` where searched)."""
    from hrm.eval.fusion import reranks
    from hrm.eval.model_pass import pass_metrics, run_model_pass

    cfg = params.eval
    n = len(data)
    fresh = untrained_model(params, model)
    untrained_pass = run_model_pass(fresh, data, ablation=False, **pass_kw)
    # the untrained HRM's own pick (a random rewrite), before the n-gram model re-ranks it
    untrained_alone = [p.greedy(cfg.max_edits) for p in untrained_pass.proposals]
    # the n-gram model alone: the untrained pass's rewrites (random order) ranked by naturalness
    ngram_alone = fuse_all(untrained_pass.proposals, hrm_weight=0.0) if reranks(cfg) else None
    untrained_pass.proposals = fuse_all(untrained_pass.proposals)
    outcomes: dict[str, dict[str, list[bool]]] = {}

    def scored(name: str, outputs: list[Outputs]) -> dict[str, Any]:
        rows = score_all(name, outputs)
        outcomes[name] = row_outcomes(rows, tests)
        return row_metrics(rows, tests_enabled=tests, ci=False)

    def searched(name: str, search) -> None:
        found, outcomes[name]["resolved_after_search"] = _searched(
            search, n, workers, f"search {name}", ref_texts, budget)
        baselines[name].update(found)

    baselines = {
        "copy": scored("copy", [{} for _ in range(n)]),
        "unigram": scored("unigram", [unigram.predict(data.inputs[i], data.records[i].segments)
                                      for i in range(n)]),
        "untrained": scored("untrained", [p.prediction(cfg.max_edits) for p in untrained_pass.proposals]),
    }
    baselines["untrained"]["abstained_rows"] = float(sum(p.abstain for p in untrained_pass.proposals))
    baselines["untrained"]["loss"] = pass_metrics(untrained_pass)["loss"]
    baselines["untrained"]["fix_in_search_candidates"] = fix_share(
        [search_candidates(p, budget, cfg.max_edits) for p in untrained_pass.proposals])
    baselines["unigram"]["fix_in_search_candidates"] = fix_share(
        [unigram.candidates(data.inputs[i], data.records[i].segments, budget) for i in range(n)])
    if tests and cfg.search.unigram_baseline:
        def unigram_search(i: int):
            # A row none of whose tokens changed in training gets the unchanged code, which the
            # verifier never passes.
            return search_over(i, unigram.candidates(data.inputs[i], data.records[i].segments, budget) or [{}])

        searched("unigram", unigram_search)
    if tests and cfg.search.untrained_baseline:
        searched("untrained", lambda i: search_over(
            i, search_candidates(untrained_pass.proposals[i], budget, cfg.max_edits)))
    if ngram_alone is not None:
        baselines["untrained_alone"] = scored("untrained_alone", untrained_alone)
        # the re-ranking reorders the rewrites, never changes them: the same expectation
        baselines["untrained_alone"]["random_rewrite_exact_accuracy"] = random_rewrite_exact(
            untrained_pass.proposals, is_fix)
        baselines["naturalness"] = alone = scored("naturalness", [p.prediction(cfg.max_edits)
                                                                 for p in ngram_alone])
        alone["abstained_rows"] = float(sum(p.abstain for p in ngram_alone))
        alone["fix_in_search_candidates"] = fix_share(
            [search_candidates(p, budget, cfg.max_edits) for p in ngram_alone])
        if tests and cfg.search.naturalness_baseline:
            searched("naturalness", lambda i: search_over(
                i, search_candidates(ngram_alone[i], budget, cfg.max_edits)))
    return baselines, outcomes


def random_rewrite_exact(proposals, is_fix) -> float | None:
    """The exact rate of a rewrite drawn uniformly from each row's rewrites (its expectation,
    not a draw): the mean over rows of the share of the row's rewrites that are the fix; a
    row without rewrites counts 0. None when no row has rewrites (`eval.fix_space: edits`)."""
    if not any(p.rewrites for p in proposals):
        return None
    return sum(sum(is_fix(i, outputs) for _, _, outputs in p.rewrites) / len(p.rewrites)
               for i, p in enumerate(proposals) if p.rewrites) / len(proposals)


def _hrm_alone(score_all, greedy: list[Outputs], tests: bool) -> dict[str, Any]:
    """The ablation of the naturalness re-ranking: the model's own greedy fix (its best-scored
    rewrite, never kept unchanged), scored like the model's; no search."""
    alone = row_metrics(score_all("model without naturalness", greedy), tests_enabled=tests, ci=False)
    return {k: alone[k] for k in ("exact_accuracy", "resolved_rate", "token_accuracy_all",
                                  "edit_accuracy", "code_compilation_success")}


def _fusion(cfg, data, scorer: RowScorer, decode, base):
    """`fuse_all(proposals, hrm_weight=1.0)`: the split's proposals re-ranked by the n-gram
    model of each row (`hrm.eval.fusion`), or returned as they are when it does not re-rank."""
    from hrm.eval.fusion import fuse, naturalness_scorer, reranks, row_model

    ncfg = cfg.naturalness
    if not reranks(cfg):
        return lambda proposals, hrm_weight=1.0: proposals
    if base is None:
        raise ValueError("eval.naturalness is enabled: pass the training-code n-gram model "
                         "(hrm.naturalness.base_model) as `naturalness`")
    scorers = [naturalness_scorer(lambda outs, i=i: decode(i, outs), row_model(base, scorer.context(rec), ncfg))
               for i, rec in enumerate(tqdm(data.records, desc="naturalness caches", unit="row", leave=False))]

    def fuse_all(proposals, hrm_weight: float = 1.0):
        return [fuse(p, scorers[i], weight=ncfg.weight, abstain=ncfg.abstain, hrm_weight=hrm_weight)
                for i, p in enumerate(proposals)]

    return fuse_all


def _paired_ablation(mp, data, cfg, reverse: bool, control) -> dict[str, Any]:
    """The reverse-learning metrics paired with the control model, or why they are not measured."""
    from hrm.eval.model_pass import paired_control_metrics, run_loss_pass

    if reverse and control is not None and control.model is not None:
        return {**paired_control_metrics(mp, run_loss_pass(control.model, data, batch_size=cfg.batch_size,
                                                           halt_on_q=cfg.halt_on_q)),
                "reverse_learning_control": control.describe()}
    why = ("the model has no feedback path (model.reverse_feedback: false)" if not reverse else
           control.reason if control is not None else "no control model was given")
    return {"not_measured": {"reverse_learning_integration": why}}


def evaluate_loaded(params: Params, model, data, tok, scorer: RowScorer, out_dir: str | Path, *,
                    unigram, model_info: dict[str, Any], split: str, control=None,
                    naturalness=None) -> dict[str, Any]:
    """The evaluation on loaded inputs (the testable core of `evaluate`); `control`: the
    reverse-learning control (`hrm.eval.control.LoadedControl`; None: none was given);
    `naturalness`: the training-code n-gram model (`hrm.naturalness.base_model`), required when
    `eval.naturalness` is enabled with rewrites."""
    import time

    from hrm.eval.decoding import decode_prediction
    from hrm.eval.fusion import reranks
    from hrm.eval.model_pass import pass_metrics, run_model_pass
    from hrm.eval.paired import paired_metrics
    from hrm.eval.report import write_report
    from hrm.eval.rewrite_outputs import split_rewrites
    from hrm.eval.search import search_metrics
    from hrm.sequences import label_outputs

    started = time.time()
    cfg = params.eval
    workers = max(1, cfg.workers)
    n = len(data)
    budget = cfg.search.budget
    refs: list[Outputs] = [label_outputs(data.inputs[i], data.labels[i], data.inserts[i],
                                         data.records[i].segments, delete_id=tok.mask_id,
                                         end_id=tok.eos_id) for i in range(n)]
    ref_texts = [[h.fixed_text for h in r.hunks] for r in data.records]
    buggy_texts = [[h.buggy_text for h in r.hunks] for r in data.records]

    def decode(i: int, outputs: Outputs):
        return decode_prediction(tok, data.inputs[i], data.records[i].segments, outputs)

    def score_all(name: str, outputs: list[Outputs]) -> list[RowResult]:
        return _parallel(lambda i: scorer.score(data.records[i], outputs[i], refs[i],
                                                decode(i, outputs[i]), ref_texts[i]),
                         list(range(n)), workers, f"score {name}")

    rewrites = (split_rewrites(tok, data, data.meta.slots)
                if cfg.fix_space == "rewrites" else None)
    pass_kw = dict(end_id=tok.eos_id, delete_id=tok.mask_id, batch_size=cfg.batch_size,
                   halt_on_q=cfg.halt_on_q, positions=cfg.search.positions,
                   alternatives=cfg.search.alternatives, rewrites=rewrites)
    reverse = model_info["reverse_feedback"]
    mp = run_model_pass(model, data, ablation=reverse, **pass_kw)
    fuse_all = _fusion(cfg, data, scorer, decode, naturalness)
    hrm_alone = [p.greedy(cfg.max_edits) for p in mp.proposals]
    mp.proposals = fuse_all(mp.proposals)
    greedy = [p.prediction(cfg.max_edits) for p in mp.proposals]
    model_rows = score_all("model", greedy)
    for row, loss, npos, q, s in zip(model_rows, mp.row_loss_sum, mp.row_positions, mp.q_halt,
                                     mp.steps, strict=True):
        row.loss, row.q_halt, row.steps = float(loss / max(npos, 1)), float(q), int(s)
    tests = cfg.run_tests and scorer.execution is not None
    metrics: dict[str, Any] = row_metrics(model_rows, tests_enabled=tests)
    metrics.update(pass_metrics(mp))
    metrics.update(_paired_ablation(mp, data, cfg, reverse, control))
    metrics.update(q_halt_metrics(mp.q_halt.tolist(), [r.exact for r in model_rows]))
    metrics["abstained_rows"] = float(sum(p.abstain for p in mp.proposals))
    if reranks(cfg):
        metrics["hrm_alone"] = _hrm_alone(score_all, hrm_alone, tests)

    search_over = _row_search(data, scorer, decode, buggy_texts, cfg.search)

    def search(i: int):
        return search_over(i, search_candidates(mp.proposals[i], budget, cfg.max_edits))

    def is_fix(i: int, outputs: Outputs) -> bool:
        return list(decode(i, outputs)) == ref_texts[i]

    def fix_share(candidates: list[list[Outputs]]) -> float:
        # the reference among what a search would check: its ceiling with a perfect verifier
        return sum(any(is_fix(i, c) for c in cands) for i, cands in enumerate(candidates)) / max(n, 1)

    outcomes = _parallel(search, list(range(n)), workers, "search")
    exact_after = [list(o.best_hunks) == ref_texts[i] for i, o in enumerate(outcomes)]
    metrics.update(search_metrics(outcomes, exact_after, budget))
    metrics["fix_in_search_candidates"] = fix_share(
        [search_candidates(p, budget, cfg.max_edits) for p in mp.proposals])
    searched = resolved_by_search(outcomes)
    metrics.update(_held_out(model_rows, searched, params.sequences.held_out_repos))

    baselines, baseline_outcomes = baseline_metrics(
        params, model, data, unigram, score_all, search_over, tests=tests, pass_kw=pass_kw,
        budget=budget, ref_texts=ref_texts, workers=workers, fix_share=fix_share, fuse_all=fuse_all,
        is_fix=is_fix)
    model_outcomes = {**row_outcomes(model_rows, tests), "resolved_after_search": searched}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_predictions(out / "predictions.jsonl", model_rows, outcomes, mp.proposals)
    result = {k: (float(v) if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)
                  else v) for k, v in metrics.items()}
    result["baselines"] = baselines
    result["paired"] = {name: paired_metrics(model_outcomes, rows) for name, rows in baseline_outcomes.items()}
    # What the gate checks before a promotion: these metrics belong to this checkpoint file.
    result["checkpoint_sha256"] = model_info.get("checkpoint_sha256")
    (out / "metrics.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    write_report(out / "report.md", split, result, model_info, reverse)
    _log(params, split, result, out, started)
    return result


def _held_out(model_rows: list[RowResult], searched: list[bool], held_out_repos) -> dict[str, Any]:
    """The breakdown by kind, repository and inferability, and the held-out repository's rate."""
    held = [r.exact for r in model_rows if r.repo in held_out_repos]
    return {"breakdown": breakdown(model_rows, searched, held_out_repos),
            "held_out_repo_rows": float(len(held)),
            "held_out_repo_exact_accuracy": sum(held) / len(held) if held else None}


def _write_predictions(path: Path, model_rows: list[RowResult], outcomes: list, proposals: list) -> None:
    """predictions.jsonl: per row its scores, whether it abstained (and the naturalness of its
    best rewrite), and its search."""
    with path.open("w", encoding="utf-8") as fh:
        for row, oc, prop in zip(model_rows, outcomes, proposals, strict=True):
            rec = row.to_json()
            rec["abstained"] = prop.abstain
            rec["naturalness"] = prop.naturalness[0] if prop.naturalness else None
            rec["search"] = {"best": oc.best_hunks, "best_passes": oc.best_passes,
                             "greedy_passes": oc.greedy_passes, "candidates": oc.candidates,
                             "iterations": oc.iterations, "converged": oc.converged,
                             "verifier": oc.verifier, "best_rank": oc.best_rank}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _log(params: Params, split: str, metrics: dict[str, Any], out: Path, started: float) -> None:
    import mlflow

    from hrm.tracking import configure, step_run

    # step_run opens the nested run in MLflow's active experiment, which it does not set:
    # without this the step run lands in "Default" while its parent is in the configured one.
    mlflow.set_experiment(experiment_id=configure(params.tracking))
    with step_run(params, f"evaluate:{split}", started=started):
        flat = {k: v for k, v in metrics.items() if isinstance(v, float)}
        for name, values in metrics["baselines"].items():
            flat.update({f"baseline_{name}.{k}": v for k, v in values.items()
                         if isinstance(v, float)})
        flat.update({f"hrm_alone.{k}": v for k, v in (metrics.get("hrm_alone") or {}).items()
                     if isinstance(v, float)})
        for name, by_metric in (metrics.get("paired") or {}).items():
            for metric, d in by_metric.items():
                flat[f"paired_{name}.{metric}"] = d["difference"]
                flat[f"paired_{name}.{metric}.ci95_low"] = d["ci95"][0]
                flat[f"paired_{name}.{metric}.p_value"] = d["p_value"]
        mlflow.log_metrics(flat)
        # the search's curve: one series per model, step = k candidates (a line in the UI)
        curves = {"resolved_within": metrics.get("resolved_within") or {}}
        curves.update({f"baseline_{name}.resolved_within": values.get("resolved_within") or {}
                       for name, values in metrics["baselines"].items()})
        for k in sorted({int(k) for curve in curves.values() for k in curve}):
            mlflow.log_metrics({key: curve[str(k)] for key, curve in curves.items() if str(k) in curve},
                               step=k)
        mlflow.log_artifacts(str(out), artifact_path=f"eval/{split}")
