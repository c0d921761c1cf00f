"""Three decoding-side ways to lift the greedy exact rate without retraining, on one `make run`:

- more ACT segments at inference than in training (`model.halt_max_steps` raised on the loaded
  model; HRM's inference-time scaling);
- averaging each rewrite's gain with the control model's (`artifacts/train/control`: the same
  data, seed and recipe without the feedback path), a two-model ensemble;
- a per-kind offset added to each rewrite's gain (a prior shift towards the kinds the verified
  bugs hold), fitted on one split by coordinate ascent and then scored on the others: an
  offset that only helps the split it was fitted on is noise, not a prior.

Greedy exact fixes (the best-scored rewrite equals the reference) per split, no tests run; a
minute. Usage:

    .venv/bin/python benchmarks/decoding_limits.py --run . [--fit-split val]

`--run`: a directory with params.yaml and the artifacts of a `make run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from abstention import split_proposals

from hrm.sequences import decode_segments
from hrm.train.checkpoint import load_for_inference

SPLITS = ("train", "val", "test")
Candidate = tuple[float, str, tuple, bool]
"""A scored rewrite: (gain, rewrite kind, its outputs as a hashable key, equals the reference)."""


def scored_rewrites(run: Path, model, split: str) -> list[list[Candidate]]:
    """Per row of `split`: its rewrites as scored by the loaded model (best first)."""
    tok, data, proposals = split_proposals(run, split, model)
    rows = []
    for i, (rec, prop) in enumerate(zip(data.records, proposals, strict=True)):
        ref = [h.fixed_text for h in rec.hunks]
        rows.append([(gain, kind, tuple(sorted(out.items())),
                      decode_segments(tok, data.inputs[i], rec.segments, out) == ref)
                     for gain, kind, out in prop.rewrites])
    return rows


def exact(rows: list[list[Candidate]], score) -> int:
    """Rows whose highest-`score` rewrite is the reference fix."""
    return sum(max(cands, key=score)[3] for cands in rows if cands)


def fit_offsets(rows: list[list[Candidate]], rounds: int = 3) -> dict[str, float]:
    """Per-kind gain offsets maximising exact fixes on `rows` (coordinate ascent over -6..6)."""
    offsets = {kind: 0.0 for cands in rows for _, kind, _, _ in cands}
    for _ in range(rounds):
        for kind in sorted(offsets):
            def with_value(v, kind=kind):
                trial = {**offsets, kind: v}
                return exact(rows, lambda c: c[0] + trial[c[1]])
            best = max(np.arange(-6.0, 6.01, 0.5), key=lambda v: (with_value(v), -abs(v)))
            offsets[kind] = float(best)
    return offsets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("."))
    ap.add_argument("--fit-split", default="val", choices=SPLITS)
    args = ap.parse_args()
    model_ckpt = args.run / "artifacts" / "train" / "refinement" / "checkpoints"
    control_ckpt = args.run / "artifacts" / "train" / "control" / "refinement" / "checkpoints"
    model, _ = load_for_inference(model_ckpt, torch.device("cpu"))
    trained_steps = model.cfg.halt_max_steps
    base = {s: scored_rewrites(args.run, model, s) for s in SPLITS}
    sizes = {s: len(base[s]) for s in SPLITS}
    print(f"rows {sizes}; greedy exact (the model as evaluated): "
          f"{ {s: exact(base[s], lambda c: c[0]) for s in SPLITS} }")
    for steps in (3, 4, 6):
        object.__setattr__(model.cfg, "halt_max_steps", steps)  # evaluation runs this many segments
        rows = {s: scored_rewrites(args.run, model, s) for s in SPLITS}
        print(f"  {steps} ACT segments at inference: { {s: exact(rows[s], lambda c: c[0]) for s in SPLITS} }")
    object.__setattr__(model.cfg, "halt_max_steps", trained_steps)
    if control_ckpt.exists():
        control_model, _ = load_for_inference(control_ckpt, torch.device("cpu"))
        control = {s: scored_rewrites(args.run, control_model, s) for s in SPLITS}
        for w in (0.25, 0.5, 1.0):
            counts = {}
            for s in SPLITS:
                gains = [{key: g for g, _, key, _ in cands} for cands in control[s]]
                counts[s] = sum(max(cands, key=lambda c, gb=gb: (1 - w) * c[0] + w * gb[c[2]])[3]
                                for cands, gb in zip(base[s], gains, strict=True) if cands)
            print(f"  control's gain weighted {w}: {counts}")
    offsets = fit_offsets(base[args.fit_split])
    shown = {k: v for k, v in offsets.items() if v}
    print(f"  per-kind offsets fitted on {args.fit_split} {shown}: "
          f"{ {s: exact(base[s], lambda c: c[0] + offsets[c[1]]) for s in SPLITS} }")


if __name__ == "__main__":
    main()
