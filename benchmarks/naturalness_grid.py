"""The n-gram re-ranking's settings against the HRM alone, no tests run (`hrm.eval.fusion`).

For each held-out row of a `make run` directory: the HRM's rewrites (as `hrm evaluate` scores
them) and each one's naturalness under the run's n-gram model (training code + the row's
repository cache at `--cache-weight`; 0: no cache). Then for each weight w of the naturalness
in `gain + w x naturalness` (0: the HRM alone; `inf`: the n-gram model alone) and each
abstention threshold t (apply the best rewrite only where its naturalness > t; `none`: always):
rows applied, exact fixes, and correct positions against copying the buggy code's. Usage:

    .venv/bin/python benchmarks/naturalness_grid.py --run <make run dir> --split val [--cache-weight 0.3]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from abstention import split_proposals

from hrm.config import load_params
from hrm.eval.decoding import decode_prediction
from hrm.eval.evaluate import load_instances
from hrm.eval.execution import ExecutionTier
from hrm.eval.fusion import fuse, naturalness_scorer, row_model
from hrm.eval.token_metrics import score_outputs
from hrm.naturalness import base_model
from hrm.sequences import label_outputs
from hrm.train.checkpoint import load_for_inference

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, math.inf)
THRESHOLDS = (None, 0.0, 1.0, 2.0, 5.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("."))
    ap.add_argument("--split", default="val")
    ap.add_argument("--cache-weight", type=float, default=None, help="default: the run's params")
    args = ap.parse_args()
    started = time.time()
    params = load_params(args.run / "params.yaml")
    ncfg = params.eval.naturalness
    if args.cache_weight is not None:
        ncfg = ncfg.model_copy(update={"cache_weight": args.cache_weight})
    model, _ = load_for_inference(args.run / "artifacts" / "train" / "refinement" / "checkpoints",
                                  torch.device("cpu"))
    tok, data, proposals = split_proposals(args.run, args.split, model)
    base = base_model(args.run / "artifacts" / "tokenizer", ncfg.order)
    tier = ExecutionTier(params.envs, load_instances(args.run / "artifacts" / "validated" / "instances.jsonl"),
                         params.eval.max_pass_to_pass)
    rows = []
    for i, (rec, prop) in enumerate(zip(data.records, proposals, strict=True)):
        ctx = tier.context(rec.instance_id, rec.repo, rec.hunks) if ncfg.cache_weight > 0 else "no cache"
        natural = naturalness_scorer(lambda outs, i=i, seg=rec.segments: decode_prediction(tok, data.inputs[i], seg, outs),
                                     row_model(base, ctx, ncfg))
        fused = fuse(prop, natural, weight=0.0, abstain=False)  # naturalness, in the HRM's order
        ref = label_outputs(data.inputs[i], data.labels[i], data.inserts[i], rec.segments,
                            delete_id=tok.mask_id, end_id=tok.eos_id)
        fixed = [h.fixed_text for h in rec.hunks]
        rows.append({
            "cands": [(gain, nat, list(decode_prediction(tok, data.inputs[i], rec.segments, outs)) == fixed,
                       score_outputs(outs, ref, rec.segments).token_correct)
                      for (gain, _, outs), nat in zip(fused.rewrites, fused.naturalness, strict=True)],
            "copy": score_outputs({}, ref, rec.segments).token_correct,
        })
    copy = sum(r["copy"] for r in rows)
    print(f"{args.split}: {len(rows)} rows, cache weight {ncfg.cache_weight}, order {ncfg.order} "
          f"({time.time() - started:.0f} s); copying {copy} positions")
    print("| w | " + " | ".join(f"t = {t}" if t is not None else "always" for t in THRESHOLDS) + " |")
    print("|---" * (len(THRESHOLDS) + 1) + "|")
    for w in WEIGHTS:
        def score(c, w=w):
            return c[1] if math.isinf(w) else c[0] + w * c[1]
        picks = [max(r["cands"], key=score) if r["cands"] else None for r in rows]
        cells = []
        for t in THRESHOLDS:
            applied = [p is not None and (t is None or p[1] > t) for p in picks]
            exact = sum(p[2] for p, a in zip(picks, applied, strict=True) if a)
            pos = sum(p[3] if a else r["copy"] for p, a, r in zip(picks, applied, rows, strict=True))
            cells.append(f"{sum(applied)} / {exact} / {pos - copy:+d}")
        print(f"| {w:g} | " + " | ".join(cells) + " |")
    print("cells: rows applied / exact / positions against copying")


if __name__ == "__main__":
    main()
