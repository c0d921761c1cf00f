"""Where a trained checkpoint's greedy fix fails on a split, and what other decodings would give.

For each bug kind: rows, greedy one-edit exact fixes (`hrm.eval.proposals.RowProposal.greedy`,
what `hrm evaluate` scores), the bug's position ranked first / in the top 5 by the model's change
probability, and how many rows the reference changes at more than one position (which a one-edit
fix can never match). Then two multi-position rules, scored exactly against the references:

- `iterative`: apply the greedy edit (when it replaces one token), run the model again on the
  edited row, add the best edit at another position;
- `second position`: add the best edit of the position with the second-largest share of the
  row's change-odds mass (the location loss's softmax) when that share is at least r times the
  first's.

No tests run (exact match against the reference only), so it takes seconds. Usage:

    .venv/bin/python benchmarks/decode_diagnostics.py --checkpoint artifacts/train/foundation/checkpoints \
        [--sequences artifacts/sequences] [--tokenizer artifacts/tokenizer] [--split val]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from hrm.config import load_params
    from hrm.eval.model_pass import run_model_pass
    from hrm.model.inference import run_inference
    from hrm.model.losses import keep_log_probs, log1mexp
    from hrm.sequences import decode_segments, label_outputs, load_split
    from hrm.tokenizer import load_tokenizer
    from hrm.train.checkpoint import load_for_inference

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--sequences", default="artifacts/sequences")
    ap.add_argument("--tokenizer", default="artifacts/tokenizer")
    ap.add_argument("--split", default="val")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = ap.parse_args()

    params = load_params(args.params)
    tok = load_tokenizer(args.tokenizer)
    data = load_split(args.sequences, args.split)
    model, _ = load_for_inference(args.checkpoint, torch.device("cpu"))
    cfg = params.eval
    kw = dict(end_id=tok.eos_id, delete_id=tok.mask_id, batch_size=cfg.batch_size,
              halt_on_q=cfg.halt_on_q, positions=cfg.search.positions,
              alternatives=cfg.search.alternatives)
    n = len(data)
    refs = [label_outputs(data.inputs[i], data.labels[i], data.inserts[i], data.records[i].segments,
                          delete_id=tok.mask_id, end_id=tok.eos_id) for i in range(n)]

    def text(i: int, outputs) -> list[str]:
        return decode_segments(tok, data.inputs[i], data.records[i].segments, outputs)

    reference = [text(i, refs[i]) for i in range(n)]
    mp = run_model_pass(model, data, ablation=False, **kw)
    greedy = [p.greedy(1) for p in mp.proposals]
    exact = [text(i, greedy[i]) == reference[i] for i in range(n)]
    first = [bool(set(greedy[i]) & set(refs[i])) for i in range(n)]
    top5 = [any(pos in refs[i] for pos in p.rank[:5]) for i, p in enumerate(mp.proposals)]

    # iterative: the greedy single-token replacement applied, the model run again
    edited = data.inputs.copy()
    applied = []
    for i in range(n):
        (pos, out), = greedy[i].items()
        anchors = {a for a, _ in data.records[i].segments}
        ok = len(out) == 1 and pos not in anchors
        if ok:
            edited[i, pos] = out[0]
        applied.append(ok)
    again = run_model_pass(model, dataclasses.replace(data, inputs=edited), ablation=False, **kw)
    iterative = []
    for i in range(n):
        more = [e for e in again.proposals[i].single_edits() if e[1] not in greedy[i]]
        outs = {**greedy[i], more[0][1]: more[0][2]} if applied[i] and more else greedy[i]
        iterative.append(text(i, outs) == reference[i])

    # the location loss's share of the change-odds mass per position
    shares = []
    for start in range(0, n, 64):
        x = torch.as_tensor(data.inputs[start:start + 64])
        with torch.no_grad():
            res = run_inference(model, x)
            keep = keep_log_probs(torch.log_softmax(res.logits.float(), -1), x, res.insert_logits)
            logits = log1mexp(keep) - keep
        labelled = torch.as_tensor(data.labels[start:start + 64]) != data.meta.ignore_index
        logits = torch.where(labelled, logits, torch.full_like(logits, float("-inf")))
        shares += list(torch.softmax(logits, -1).numpy())

    by = collections.defaultdict(lambda: collections.Counter())
    for i in range(n):
        b = by[data.records[i].kind]
        b["rows"] += 1
        b["exact"] += exact[i]
        b["first"] += first[i]
        b["top5"] += top5[i]
        b["multi"] += len(refs[i]) > 1
        b["iterative"] += iterative[i]
    cols = ("rows", "exact", "first", "top5", "multi", "iterative")
    print(f"{'kind':28s} " + " ".join(f"{c:>9s}" for c in cols))
    for kind, b in sorted(by.items()):
        print(f"{kind:28s} " + " ".join(f"{b[c]:9d}" for c in cols))
    print(f"{'total':28s} " + " ".join(f"{sum(b[c] for b in by.values()):9d}" for c in cols))
    for r in (0.2, 0.5, 0.7, 0.9):
        hits = 0
        for i in range(n):
            order = np.argsort(-shares[i])
            p1, p2 = int(order[0]), int(order[1])
            outs = dict(greedy[i])
            if p2 not in outs and shares[i][p2] >= r * shares[i][p1]:
                best = [e for e in mp.proposals[i].single_edits() if e[1] == p2]
                if best:
                    outs[p2] = best[0][2]
            hits += text(i, outs) == reference[i]
        print(f"second position when its share >= {r} x the first's: exact {hits}/{n}")


if __name__ == "__main__":
    main()
