"""Could the greedy fix beat copying on token accuracy by abstaining where the model is unsure?

The greedy fix (`eval.fix_space: rewrites`) always applies the best-scored rewrite. A wrong one
costs one or two positions against copying the buggy code, a right one gains the bug's
positions, so at a low exact rate the token accuracy stays below copying's. This sweeps a rule
"apply the rewrite only when its confidence is at least t, else output the buggy code" over
three confidences of each row's best rewrite: its gain (log-odds against keeping every token),
its margin over the second-best rewrite, and its share of the softmax over the row's rewrites;
for each threshold (the 0-60% quantiles of the split's values): rows applied, exact fixes, and
correct positions against copying's. No tests run; seconds. Usage:

    .venv/bin/python benchmarks/abstention.py --run . [--split val] [--checkpoint <dir or file>]

`--run`: a directory with params.yaml and the artifacts of a `make run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from hrm.config import load_params
from hrm.eval.proposals import propose
from hrm.eval.rewrite_outputs import split_rewrites
from hrm.eval.token_metrics import score_outputs
from hrm.sequences import decode_segments, label_outputs, load_split
from hrm.tokenizer import load_tokenizer
from hrm.train.checkpoint import load_for_inference


def split_proposals(run: Path, split: str, model):
    """The tokenizer, the loaded split and the model's proposals for its rows, with the run's
    rewrite decoding (what `hrm evaluate` scores)."""
    params = load_params(run / "params.yaml")
    tok = load_tokenizer(run / "artifacts" / "tokenizer")
    data = load_split(run / "artifacts" / "sequences", split)
    proposals = propose(model, data.inputs, data.labels, [[a for a, _ in r.segments] for r in data.records],
                        end_id=tok.eos_id, delete_id=tok.mask_id, ignore_index=data.meta.ignore_index,
                        positions=params.eval.search.positions, alternatives=params.eval.search.alternatives,
                        batch_size=params.eval.batch_size, rewrites=split_rewrites(tok, data, data.meta.slots))
    return tok, data, proposals


def row_scores(run: Path, split: str, checkpoint: Path) -> list[dict]:
    """Per row: the best rewrite's gain, margin and share, whether the greedy fix is exact, and
    the correct positions of the greedy fix and of copying."""
    model, _ = load_for_inference(checkpoint, torch.device("cpu"))
    tok, data, proposals = split_proposals(run, split, model)
    rows = []
    for i, (rec, prop) in enumerate(zip(data.records, proposals, strict=True)):
        greedy = prop.greedy()
        ref = label_outputs(data.inputs[i], data.labels[i], data.inserts[i], rec.segments,
                            delete_id=tok.mask_id, end_id=tok.eos_id)
        gains = [g for g, _, _ in prop.rewrites] or [float("nan")]
        rows.append({
            "gain": gains[0],
            "margin": gains[0] - gains[1] if len(gains) > 1 else float("inf"),
            "share": float(np.exp(gains[0] - np.logaddexp.reduce(gains))),
            "exact": decode_segments(tok, data.inputs[i], rec.segments, greedy) == [h.fixed_text for h in rec.hunks],
            "correct": score_outputs(greedy, ref, rec.segments).token_correct,
            "copy_correct": score_outputs({}, ref, rec.segments).token_correct,
            "positions": score_outputs({}, ref, rec.segments).token_total,
        })
    return rows


def run_arguments(description: str) -> argparse.Namespace:
    """`--run`, `--split` and `--checkpoint` (default: the run's refinement checkpoints), parsed."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--run", type=Path, default=Path("."))
    ap.add_argument("--split", default="val")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="default: <run>/artifacts/train/refinement/checkpoints")
    args = ap.parse_args()
    args.checkpoint = args.checkpoint or args.run / "artifacts" / "train" / "refinement" / "checkpoints"
    return args


def main() -> None:
    args = run_arguments(__doc__.split("\n\n")[0])
    rows = row_scores(args.run, args.split, args.checkpoint)
    copy = sum(r["copy_correct"] for r in rows)
    print(f"{args.split}: {len(rows)} rows, {sum(r['positions'] for r in rows)} positions; greedy exact "
          f"{sum(r['exact'] for r in rows)}, correct positions {sum(r['correct'] for r in rows)} "
          f"against copying's {copy}")
    for name in ("gain", "margin", "share"):
        values = [r[name] for r in rows if np.isfinite(r[name])]
        for q, t in zip((0, 10, 20, 30, 40, 50, 60), np.quantile(values, [0, .1, .2, .3, .4, .5, .6]), strict=True):
            applied = [r for r in rows if r[name] >= t]
            correct = sum(r["correct"] if r[name] >= t else r["copy_correct"] for r in rows)
            print(f"  {name:6s} >= {t:7.3f} (q{q:02d}): applied {len(applied):3d}, exact "
                  f"{sum(r['exact'] for r in applied):3d}, correct positions {correct} ({correct - copy:+d})")


if __name__ == "__main__":
    main()
