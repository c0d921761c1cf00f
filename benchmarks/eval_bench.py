"""Evaluation benchmark (not run by the suite), on the real sample read in place:

1. static tiers (token metrics, syntax, compile, AST match): rows/s of `RowScorer.score` without
   tests, for fragment context (no environment) and file context (tenacity environment);
   goal >= 200 rows/s;
2. execution tier: seconds per instance with a warm environment (contexts built, tests run for
   a distinct prediction each time, so no cache hit); goal <= 1 s;
3. SWE-search: seconds per example against its gain over greedy (swe_search_score -
   greedy_pass_rate), without environment on the val split and with the tenacity environment
   on `--env-rows` val rows, for a briefly trained tiny model (trained here unless
   `--checkpoint` is given).

    .venv/bin/python benchmarks/eval_bench.py [--sample ../shared/data/swe-smith/sample.jsonl]
        [--checkpoint DIR_OR_FILE --work DIR_OF_ITS_TOK_AND_SEQ] [--env-rows 2] [--exec-rows 6]
        [--json out.json] [--no-search]

`--no-search` stops after sections 1 and 2 (no training, about a minute).

4. `--all-tenacity` (alone: sections 1-3 are skipped): the issue's acceptance check on the whole
   real sample, not just the two rows the test suite runs. The oracle (reference fix) and the
   copy baseline (the buggy region) go through `RowScorer.score` with the execution tier
   (`eval.max_pass_to_pass` PASS_TO_PASS per row, cold caches) for EVERY tenacity row whose bug
   patch applies; reports resolved counts, the rows that miss the expectation (oracle resolved,
   copy not) with their reasons, and the wall time.

    .venv/bin/python benchmarks/eval_bench.py --all-tenacity [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from hrm.config import load_params
from hrm.data.instance import read_instances
from hrm.eval.baselines import place, target_ids
from hrm.eval.decoding import decode_prediction
from hrm.eval.execution import ExecutionTier
from hrm.eval.rows import RowScorer
from hrm.hunks import parse_patch

REPO = "swesmith/jd__tenacity.0d40e76f"
TARGET_TOKENS = 128
WEIGHTS = [0.1, 0.2, 0.3, 0.4]


def build(sample: Path, root: Path, params) -> None:
    from hrm.sequences import build_sequences
    from hrm.splits import build_splits
    from hrm.tokenizer import build_tokenizer

    build_splits(sample, root / "splits", params.sequences)
    build_tokenizer(sample, root / "splits" / "splits.json", root / "tok", params.tokenizer)
    build_sequences(sample, root / "splits" / "splits.json", root / "tok", root / "seq",
                    params.sequences, progress=False)


def static_rate(scorer: RowScorer, items, min_s: float = 3.0) -> dict:
    """Rows/s of scoring each item's oracle and copy predictions, repeated for >= min_s; the
    parse caches are cleared per pass (one pass = one evaluation's reuse, no more)."""
    from hrm.eval.rows import clear_caches

    n, t0 = 0, time.perf_counter()
    while True:
        clear_caches()
        for rec, pred, labels, ignore, buggy, oracle_h, copy_h in items:
            scorer.score(rec, pred, labels, ignore, buggy, oracle_h, oracle_h)
            scorer.score(rec, pred, labels, ignore, buggy, copy_h, oracle_h)
            n += 2
        took = time.perf_counter() - t0
        if took >= min_s:
            return {"rows": n, "seconds": round(took, 3), "rows_per_s": round(n / took, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", default="../shared/data/swe-smith/sample.jsonl")
    ap.add_argument("--checkpoint", default=None, help="skip training; needs --work")
    ap.add_argument("--work", default=None, help="directory holding tok/ and seq/")
    ap.add_argument("--env-rows", type=int, default=2)
    ap.add_argument("--exec-rows", type=int, default=6)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-search", action="store_true", help="sections 1 and 2 only")
    ap.add_argument("--all-tenacity", action="store_true",
                    help="section 4 only: oracle and copy through the execution tier on every "
                         "tenacity row whose patch applies")
    args = ap.parse_args()
    if args.all_tenacity:
        out = all_tenacity(Path(args.sample))
        _finish(out, args, None)
        return

    import torch

    from hrm.sequences import decode_target, load_split
    from hrm.tokenizer import load_tokenizer

    torch.set_num_threads(1)
    sample = Path(args.sample)
    base = load_params(profile="tiny")
    seq_cfg = base.sequences.model_copy(update={"max_target_tokens": TARGET_TOKENS})
    params = base.model_copy(update={"sequences": seq_cfg})
    tmp = tempfile.TemporaryDirectory(prefix="eval-bench-")
    work = Path(args.work) if args.work else Path(tmp.name)
    if not args.work:
        build(sample, work, params)
    tok = load_tokenizer(work / "tok")
    out: dict = {"machine": {"torch_threads": torch.get_num_threads()}}

    # ---- 1. static tiers -------------------------------------------------------------------
    data = {s: load_split(work / "seq", s) for s in ("train", "val", "test")}
    items = []
    for split in data.values():
        start, ignore = split.meta.prompt_len, split.meta.ignore_index
        for i, rec in enumerate(split.records):
            refs = decode_target(tok, split.labels[i][start:])
            buggy = target_ids([h.buggy_text for h in rec.hunks], tok)
            copy_h = decode_target(tok, place(buggy, split.labels[i], ignore, tok.pad_id)[start:])
            items.append((rec, split.labels[i].copy(), split.labels[i], ignore, buggy, refs,
                          copy_h))
    out["static_fragment"] = static_rate(RowScorer(WEIGHTS, None, run_tests=True), items)

    env_cfg = params.envs
    instances = {i.instance_id: i for i in read_instances(sample)}
    tier = ExecutionTier(env_cfg, instances, params.eval.max_pass_to_pass)
    file_scorer = RowScorer(WEIGHTS, tier, run_tests=False)
    t0 = time.perf_counter()
    file_items = [it for it in items if not isinstance(file_scorer.context(it[0]), str)]
    out["context_build_s_per_instance"] = round((time.perf_counter() - t0) / len(items), 3)
    out["static_file"] = static_rate(file_scorer, file_items)
    out["static_file"]["instances"] = len(file_items)

    # ---- 2. execution tier, warm environment ------------------------------------------------
    rows = []
    for inst in instances.values():
        if inst.repo != REPO:
            continue
        hunks = parse_patch(inst.patch, source=inst.instance_id)
        rec = SimpleNamespace(instance_id=inst.instance_id, repo=inst.repo, hunks=hunks,
                              target_truncated=False)
        if not isinstance(tier.context(rec.instance_id, rec.repo, hunks), str):
            rows.append((inst, rec))
        if len(rows) == args.exec_rows:
            break
    exec_scorer = RowScorer(WEIGHTS, tier, run_tests=True)
    times, sandbox, resolved = [], [], 0
    for _inst, rec in rows:
        ctx = tier.context(rec.instance_id, rec.repo, rec.hunks)
        oracle = [h.fixed_text for h in rec.hunks]
        t0 = time.perf_counter()
        outcome = tier.run(ctx, oracle)
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
    from hrm.eval.search_runner import run_search
    from hrm.train.checkpoint import load_for_inference

    ckpt = args.checkpoint
    if ckpt is None:
        from hrm.train.data import load_train_arrays
        from hrm.train.loop import train_phase

        t0 = time.perf_counter()
        res = train_phase(params, "foundation", load_train_arrays(work / "seq", "train"),
                          work / "train", tokenizer_dir=work / "tok", progress=False)
        out["train_s"] = round(time.perf_counter() - t0, 2)
        ckpt = str(res.checkpoint)
    model, info = load_for_inference(ckpt, "cpu")
    out["checkpoint"] = {"path": ckpt, "step": info.step}
    val = data["val"]
    start, ignore = val.meta.prompt_len, val.meta.ignore_index
    decode = lambda ids: decode_prediction(tok, ids[start:])  # noqa: E731
    mp = run_model_pass(model, val.inputs, val.labels, ignore_index=ignore,
                        batch_size=params.eval.batch_size, halt_on_q=False, ablation=False)
    buggy = [target_ids([h.buggy_text for h in r.hunks], tok) for r in val.records]
    refs = [decode(row) for row in val.labels]

    def search(scorer: RowScorer, idx: list[int]) -> dict:
        sub = SimpleNamespace(inputs=val.inputs[idx], labels=val.labels[idx], meta=val.meta,
                              records=[val.records[i] for i in idx])
        sub_mp = SimpleNamespace(pred_ids=mp.pred_ids[idx], q_halt=mp.q_halt[idx])
        greedy_rows = [scorer.score(val.records[i], mp.pred_ids[i], val.labels[i], ignore,
                                    buggy[i], decode(mp.pred_ids[i]), refs[i]) for i in idx]
        t0 = time.perf_counter()
        outcomes, m = run_search(model, _Sized(sub, len(idx)), sub_mp, greedy_rows, decode,
                                 [buggy[i] for i in idx], [refs[i] for i in idx], scorer, params)
        took = time.perf_counter() - t0
        return {"rows": len(idx), "seconds_per_example": round(took / len(idx), 3),
                "greedy_pass_rate": m["greedy_pass_rate"],
                "swe_search_score": m["swe_search_score"],
                "gain_over_greedy": m["swe_search_score"] - m["greedy_pass_rate"],
                "candidates_per_example": m["swe_search_candidates"],
                "iterations_per_example": m["swe_search_iterations"],
                "convergence_rate": m["swe_search_convergence_rate"],
                "tiered_greedy": _mean([r.tier_score for r in greedy_rows]),
                "tiered_search": m["swe_search_tiered_accuracy"]}

    out["search_no_env"] = search(RowScorer(WEIGHTS, None, run_tests=True),
                                  list(range(len(val))))
    env_idx = [i for i, r in enumerate(val.records)
               if not isinstance(exec_scorer.context(r), str)][:args.env_rows]
    out["search_env"] = search(exec_scorer, env_idx) if env_idx else None
    out["search_config"] = params.eval.search.model_dump()
    _finish(out, args, tmp)


def all_tenacity(sample: Path) -> dict:
    """Section 4: oracle vs copy with real execution on every applicable tenacity row."""
    from hrm.envs.environment import limits_from
    from hrm.envs.sandbox import isolation_for

    params = load_params(profile="tiny")
    instances = {i.instance_id: i for i in read_instances(sample)}
    tier = ExecutionTier(params.envs, instances, params.eval.max_pass_to_pass)
    scorer = RowScorer(WEIGHTS, tier, run_tests=True)
    dummy = np.array([7]), np.array([7]), -100, [7]  # token tier not measured here
    t_all = time.perf_counter()
    tenacity = [i for i in instances.values() if i.repo == REPO]
    skipped: dict[str, str] = {}
    oracle_ok = copy_ok = excused = 0
    misses, per_row = [], []
    for inst in tenacity:
        hunks = parse_patch(inst.patch, source=inst.instance_id)
        rec = SimpleNamespace(instance_id=inst.instance_id, repo=inst.repo, hunks=hunks,
                              target_truncated=False)
        ctx = scorer.context(rec)
        if isinstance(ctx, str):
            skipped[inst.instance_id] = ctx
            continue
        refs = [h.fixed_text for h in hunks]
        t0 = time.perf_counter()
        oracle = scorer.score(rec, *dummy, refs, refs)
        copy = scorer.score(rec, *dummy, [h.buggy_text for h in hunks], refs)
        per_row.append(time.perf_counter() - t0)
        oracle_ok += oracle.resolved is True
        excused += oracle.test_reason.startswith("resolved; ignored")
        copy_ok += copy.resolved is True
        if oracle.resolved is not True or copy.resolved is not False:
            misses.append({"instance_id": inst.instance_id, "oracle": oracle.resolved,
                           "oracle_reason": oracle.test_reason, "copy": copy.resolved,
                           "copy_reason": copy.test_reason})
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


class _Sized:
    """A split view with len() (run_search iterates `range(0, len(data), batch)`)."""

    def __init__(self, ns: SimpleNamespace, n: int):
        self.__dict__.update(ns.__dict__)
        self._n = n

    def __len__(self) -> int:
        return self._n


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return round(float(np.mean(vals)), 4) if vals else None


if __name__ == "__main__":
    main()
