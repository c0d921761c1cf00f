"""Evaluation benchmark (not run by the suite), on the real sample read in place. Sequences
are built like the eval tests' (tiny profile, `--seq-len` 384, tenacity split by function,
whole functions from the cached tenacity environment):

1. static tiers (position scores, syntax, compile, AST match): rows/s of `RowScorer.score`
   without tests, on every row's oracle (the reference outputs) and copy (no change), in
   fragment context (no environment) and file context (tenacity environment);
   goal >= 200 rows/s;
2. execution tier: seconds per instance with a warm environment (contexts built, each row's
   reference fix run once, so no cache hit); goal <= 1 s;
3. SWE-search: seconds per row against its gain over greedy (swe_search_score -
   greedy_pass_rate) for a briefly trained tiny model (trained here unless `--checkpoint` is
   given): the model's proposals searched exactly as `evaluate_loaded` does, with the `static`
   verifier on every val row and the `tests` verifier on `--env-rows` val rows.

    .venv/bin/python benchmarks/eval_bench.py [--sample ../shared/data/swe-smith/sample.jsonl]
        [--checkpoint DIR_OR_FILE --work DIR_OF_ITS_TOK_AND_SEQ] [--env-rows 2] [--exec-rows 6]
        [--json out.json] [--no-search]

`--no-search` stops after sections 1 and 2 (no training, well under a minute).

4. `--all-tenacity` (alone: sections 1-3 are skipped): on EVERY tenacity row of the sample whose
   bug patch applies (its patch hunks, no sequence budget), the reference fix and the buggy code
   through the execution tier (`ExecutionTier.run`, `eval.max_pass_to_pass` PASS_TO_PASS per
   row, cold caches). The scorer never runs the buggy code (an unchanged prediction is no
   repair); here it is run anyway to show its tests fail. Reports resolved counts, the rows
   that miss the expectation (fix resolved, buggy not) with their reasons, and the wall time.

    .venv/bin/python benchmarks/eval_bench.py --all-tenacity [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from hrm.config import load_params
from hrm.data.instance import read_instances
from hrm.eval.decoding import decode_prediction
from hrm.eval.execution import ExecutionTier
from hrm.eval.rows import RowScorer
from hrm.hunks import parse_patch

REPO = "swesmith/jd__tenacity.0d40e76f"
WEIGHTS = [0.1, 0.2, 0.3, 0.4]


def bench_params(seq_len: int, cache_dir: str | None):
    base = load_params(profile="tiny")
    seq = base.sequences.model_copy(update={"seq_len": seq_len, "held_out_repos": []})
    envs = base.envs if cache_dir is None else base.envs.model_copy(update={"cache_dir": cache_dir})
    return base.model_copy(update={"sequences": seq, "envs": envs})


def build(sample: Path, root: Path, params) -> None:
    from hrm.sequences import build_sequences
    from hrm.splits import build_splits
    from hrm.tokenizer import build_tokenizer

    build_splits(sample, root / "splits", params.sequences)
    build_tokenizer(sample, root / "splits" / "splits.json", root / "tok", params.tokenizer)
    build_sequences(sample, root / "splits" / "splits.json", root / "tok", root / "seq",
                    params.sequences, envs=params.envs, progress=False)


def static_rate(scorer: RowScorer, items, min_s: float = 3.0) -> dict:
    """Rows/s of scoring each item's oracle and copy predictions, repeated for >= min_s; the
    parse caches are cleared per pass (one pass = one evaluation's reuse, no more)."""
    from hrm.eval.rows import clear_caches

    n, t0 = 0, time.perf_counter()
    while True:
        clear_caches()
        for rec, ref, oracle_h, copy_h, refs in items:
            scorer.score(rec, ref, ref, oracle_h, refs)
            scorer.score(rec, {}, ref, copy_h, refs)
            n += 2
        took = time.perf_counter() - t0
        if took >= min_s:
            return {"rows": n, "seconds": round(took, 3), "rows_per_s": round(n / took, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", default="../shared/data/swe-smith/sample.jsonl")
    ap.add_argument("--checkpoint", default=None, help="skip training; needs --work")
    ap.add_argument("--work", default=None, help="directory holding tok/ and seq/")
    ap.add_argument("--seq-len", type=int, default=384)
    ap.add_argument("--cache-dir", default=None, help="envs.cache_dir (default: params')")
    ap.add_argument("--env-rows", type=int, default=2)
    ap.add_argument("--exec-rows", type=int, default=6)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-search", action="store_true", help="sections 1 and 2 only")
    ap.add_argument("--all-tenacity", action="store_true",
                    help="section 4 only: reference fix and buggy code through the execution "
                         "tier on every tenacity row whose patch applies")
    args = ap.parse_args()
    if args.all_tenacity:
        out = all_tenacity(Path(args.sample), args.cache_dir)
        _finish(out, args, None)
        return

    import torch

    from hrm.sequences import label_outputs, load_split
    from hrm.tokenizer import load_tokenizer

    torch.set_num_threads(1)
    sample = Path(args.sample)
    params = bench_params(args.seq_len, args.cache_dir)
    tmp = tempfile.TemporaryDirectory(prefix="eval-bench-")
    work = Path(args.work) if args.work else Path(tmp.name)
    t0 = time.perf_counter()
    if not args.work:
        build(sample, work, params)
    tok = load_tokenizer(work / "tok")
    out: dict = {"machine": {"torch_threads": torch.get_num_threads()},
                 "build_s": round(time.perf_counter() - t0, 2)}

    # ---- 1. static tiers -------------------------------------------------------------------
    data = {s: load_split(work / "seq", s) for s in ("train", "val", "test")}
    out["rows"] = {s: len(d) for s, d in data.items()}
    items = []
    for split in data.values():
        for i, rec in enumerate(split.records):
            ref = label_outputs(split.inputs[i], split.labels[i], split.inserts[i], rec.segments,
                                delete_id=tok.mask_id, end_id=tok.eos_id)
            oracle_h = decode_prediction(tok, split.inputs[i], rec.segments, ref)
            copy_h = decode_prediction(tok, split.inputs[i], rec.segments, {})
            items.append((rec, ref, oracle_h, copy_h, [h.fixed_text for h in rec.hunks]))
    out["static_fragment"] = static_rate(RowScorer(WEIGHTS, None, run_tests=True), items)

    instances = {i.instance_id: i for i in read_instances(sample)}
    tier = ExecutionTier(params.envs, instances, params.eval.max_pass_to_pass)
    file_scorer = RowScorer(WEIGHTS, tier, run_tests=False)
    t0 = time.perf_counter()
    file_items = [it for it in items if not isinstance(file_scorer.context(it[0]), str)]
    out["context_build_s_per_instance"] = round((time.perf_counter() - t0) / len(items), 3)
    out["static_file"] = static_rate(file_scorer, file_items)
    out["static_file"]["instances"] = len(file_items)

    # ---- 2. execution tier, warm environment ------------------------------------------------
    times, sandbox, resolved = [], [], 0
    for rec, _ref, _o, _c, refs in file_items[:args.exec_rows]:
        ctx = file_scorer.context(rec)
        t0 = time.perf_counter()
        outcome = tier.run(ctx, refs)
        times.append(time.perf_counter() - t0)
        sandbox.append(outcome.duration_s)
        resolved += outcome.resolved
    out["execution"] = {
        "instances": len(times), "tests_per_instance_max": 1 + params.eval.max_pass_to_pass,
        "seconds_per_instance_mean": round(statistics.mean(times), 3),
        "seconds_per_instance_median": round(statistics.median(times), 3),
        "seconds_per_instance_max": round(max(times), 3), "oracle_resolved": resolved,
        "of_which_sandboxed_pytest_s_mean": round(statistics.mean(sandbox), 3),
        "max_pass_to_pass": params.eval.max_pass_to_pass,
    }

    if args.no_search:
        _finish(out, args, tmp)
        return

    # ---- 3. search cost vs gain -------------------------------------------------------------
    from hrm.eval.model_pass import run_model_pass
    from hrm.eval.search import search_metrics, search_row, verify
    from hrm.train.checkpoint import load_for_inference

    ckpt = args.checkpoint
    if ckpt is None:
        from hrm.train.data import load_train_arrays
        from hrm.train.loop import train_phase

        phase = next(p.name for p in params.train.phases if p.data == "train")
        t0 = time.perf_counter()
        res = train_phase(params, phase, load_train_arrays(work / "seq", "train"),
                          work / "train", tokenizer_dir=work / "tok", progress=False)
        out["train_s"] = round(time.perf_counter() - t0, 2)
        ckpt = str(res.checkpoint)
    model, info = load_for_inference(ckpt, "cpu")
    out["checkpoint"] = {"path": ckpt, "step": info.step}
    val = data["val"]
    cfg = params.eval.search
    budget = cfg.budget
    mp = run_model_pass(model, val, end_id=tok.eos_id, delete_id=tok.mask_id,
                        batch_size=params.eval.batch_size, halt_on_q=False, ablation=False,
                        positions=cfg.positions, alternatives=cfg.alternatives)

    def search(scorer: RowScorer, idx: list[int]) -> dict:
        t0 = time.perf_counter()
        outcomes, exact = [], []
        for i in idx:
            rec, prop = val.records[i], mp.proposals[i]
            greedy = prop.greedy()
            cands = [greedy] + [c for c, _ in prop.candidates(budget) if c != greedy]
            ctx = scorer.context(rec)
            buggy = [h.buggy_text for h in rec.hunks]
            oc = search_row(cands, lambda o, i=i: decode_prediction(tok, val.inputs[i],
                                                                  val.records[i].segments, o),
                            lambda h, c=ctx, b=buggy: verify(c, h, scorer, b), cfg)
            outcomes.append(oc)
            exact.append(oc.best_hunks == [h.fixed_text for h in rec.hunks])
        took = time.perf_counter() - t0
        m = search_metrics(outcomes, exact, budget)
        return {"rows": len(idx), "seconds_per_row": round(took / len(idx), 3),
                "verifier": m["swe_search_verifier"],
                "greedy_pass_rate": m["greedy_pass_rate"],
                "swe_search_score": m["swe_search_score"],
                "gain_over_greedy": m["swe_search_score"] - m["greedy_pass_rate"],
                "resolved_after_search": m["resolved_after_search"],
                "exact_after_search": m["exact_after_search"],
                "candidates_per_row": m["swe_search_candidates"],
                "iterations_per_row": m["swe_search_iterations"],
                "convergence_rate": m["swe_search_convergence_rate"]}

    out["search_static"] = search(RowScorer(WEIGHTS, None, run_tests=True),
                                  list(range(len(val))))
    exec_scorer = RowScorer(WEIGHTS, tier, run_tests=True)
    env_idx = [i for i, r in enumerate(val.records)
               if not isinstance(exec_scorer.context(r), str)][:args.env_rows]
    out["search_tests"] = search(exec_scorer, env_idx) if env_idx else None
    out["search_config"] = cfg.model_dump()
    _finish(out, args, tmp)


def all_tenacity(sample: Path, cache_dir: str | None) -> dict:
    """Section 4: reference fix vs buggy code with real execution on every applicable row."""
    from hrm.envs.environment import limits_from
    from hrm.envs.sandbox import isolation_for

    params = bench_params(384, cache_dir)
    instances = {i.instance_id: i for i in read_instances(sample)}
    tier = ExecutionTier(params.envs, instances, params.eval.max_pass_to_pass)
    t_all = time.perf_counter()
    tenacity = [i for i in instances.values() if i.repo == REPO]
    skipped: dict[str, str] = {}
    oracle_ok = copy_ok = excused = 0
    misses, per_row = [], []
    for inst in tenacity:
        hunks = parse_patch(inst.patch, source=inst.instance_id)
        ctx = tier.context(inst.instance_id, inst.repo, hunks)
        if isinstance(ctx, str):
            skipped[inst.instance_id] = ctx
            continue
        t0 = time.perf_counter()
        oracle = tier.run(ctx, [h.fixed_text for h in hunks])
        copy = tier.run(ctx, [h.buggy_text for h in hunks])
        per_row.append(time.perf_counter() - t0)
        oracle_ok += oracle.resolved
        excused += oracle.reason.startswith("resolved; ignored")
        copy_ok += copy.resolved
        if not oracle.resolved or copy.resolved:
            misses.append({"instance_id": inst.instance_id, "oracle": oracle.resolved,
                           "oracle_reason": oracle.reason, "copy": copy.resolved,
                           "copy_reason": copy.reason})
    n = len(per_row)
    return {
        "isolation": isolation_for(limits_from(params.envs)).label,
        "tenacity_rows": len(tenacity), "patch_applies": n, "skipped": skipped,
        "oracle_resolved": oracle_ok, "copy_resolved": copy_ok,
        "oracle_resolved_with_excused_pass_to_pass": excused,
        "max_pass_to_pass": params.eval.max_pass_to_pass,
        "misses": misses,
        "seconds_total": round(time.perf_counter() - t_all, 1),
        "seconds_per_row_oracle_and_copy_mean": round(statistics.mean(per_row), 3) if n else None,
    }


def _finish(out: dict, args, tmp) -> None:
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
