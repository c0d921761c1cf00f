"""Does voting over renamed copies of the input (test-time augmentation) sort right fixes from wrong?

HRM votes over augmented copies of a puzzle. Here each held-out row is also encoded with its
local names renamed (`hrm.train.augmentation.make_augment`, the training augmentation, with
seeds no training epoch used), the model scores the rewrites of every copy, and each rewrite is keyed by
its fixed text with the copy's names mapped back to the original's (the renaming keeps layout
and only replaces identifiers by fresh names that occur nowhere else, so the map is read off
the two buggy texts token by token), so the same edit under other names gets the same key. Per
row: the rewrite keys' softmax shares averaged over the copies; the vote is the key with the
highest mean share.

Reported per split, beside the model as evaluated (the original copy's best rewrite): exact fixes
of the vote, and, for a rule "apply the voted rewrite only when its mean share (or the share of
copies whose own best rewrite it is) is at least t, else output the buggy code", rows applied,
exact fixes and correct positions against copying's. A vote whose key is none of the original
row's rewrites (none in the committed run) is counted as not applied. No tests run; 20 s a
split. Usage:

    .venv/bin/python benchmarks/rename_vote.py --run . [--split val] [--copies 8]

`--run`: a directory with params.yaml and the artifacts of a `make run`.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from hrm.config import load_params
from hrm.eval.proposals import propose
from hrm.eval.rewrite_outputs import rewrite_outputs
from hrm.eval.token_metrics import score_outputs
from hrm.sequences import decode_segments, label_outputs, load_split
from hrm.tokenizer import load_tokenizer
from hrm.train.augmentation import make_augment
from hrm.train.checkpoint import load_for_inference
from hrm.train.negatives import label_segments

_NAME = re.compile(r"[A-Za-z_]\w*")
SEED_BASE = 10_000_000  # epochs never reach this: no copy repeats a training variant


def names_back(original: list[str], renamed: list[str]) -> dict[str, str]:
    """{fresh name: original name} of one renaming, from the buggy texts before and after."""
    back: dict[str, str] = {}
    for a, b in zip(original, renamed, strict=True):
        pairs = list(zip(_NAME.findall(a), _NAME.findall(b), strict=True))
        back.update({new: old for old, new in pairs if old != new})
    return back


def edit_key(texts: list[str], back: dict[str, str]) -> tuple[str, ...]:
    """The texts with a copy's fresh names mapped back to the original's."""
    return tuple(_NAME.sub(lambda m: back.get(m.group(0), m.group(0)), t) for t in texts)


def encoded_copies(run: Path, split: str, copies: int):
    """Per row: [(inputs, labels, inserts, segments, names back)], the stored encoding first, then
    up to `copies` renamed ones made by the training's own augmentation (`make_augment`, at
    `train.augment_rate`; rows with nothing to rename, or a copy that no longer fits or is cut
    to another window, get fewer)."""
    params = load_params(run / "params.yaml")
    tok = load_tokenizer(run / "artifacts" / "tokenizer")
    data = load_split(run / "artifacts" / "sequences", split)
    augment = make_augment(run / "artifacts" / "sequences", split, run / "artifacts" / "tokenizer",
                           params.train.seed, rate=params.train.augment_rate)
    rows = []
    for i, rec in enumerate(data.records):
        variants = [(data.inputs[i], data.labels[i], data.inserts[i], rec.segments, {})]
        buggy = [h.buggy_text for h in rec.hunks]
        for c in range(copies):
            got = augment(i, SEED_BASE + c)
            if got is None:
                continue
            inputs, labels, inserts = got
            segments = label_segments(labels)
            renamed = decode_segments(tok, inputs, segments, {})
            # a copy cut to another window would key its rewrites by other texts: left out
            if len(renamed) != len(buggy) or any(len(_NAME.findall(a)) != len(_NAME.findall(b))
                                                 for a, b in zip(buggy, renamed, strict=True)):
                continue
            variants.append((inputs, labels, inserts, segments, names_back(buggy, renamed)))
        rows.append(variants)
    return params, tok, data, rows


def row_votes(run: Path, split: str, copies: int, model) -> list[dict]:
    params, tok, data, rows = encoded_copies(run, split, copies)
    flat = [v for variants in rows for v in variants]
    slots = data.meta.slots
    props = propose(model, np.stack([v[0] for v in flat]), np.stack([v[1] for v in flat]),
                    [[a for a, _ in v[3]] for v in flat], end_id=tok.eos_id, delete_id=tok.mask_id,
                    ignore_index=data.meta.ignore_index, positions=params.eval.search.positions,
                    alternatives=params.eval.search.alternatives, batch_size=params.eval.batch_size,
                    rewrites=[rewrite_outputs(tok, v[0], v[3], slots) for v in flat])
    out, k = [], 0
    for variants in rows:
        mine = props[k:k + len(variants)]
        k += len(variants)
        shares: dict[tuple, float] = defaultdict(float)
        tops: dict[tuple, int] = defaultdict(int)
        original: dict[tuple, dict] = {}
        for v, (inputs, _, _, segments, back) in enumerate(variants):
            rw = mine[v].rewrites
            if not rw:
                continue
            gains = np.array([g for g, _, _ in rw])
            p = np.exp(gains - np.logaddexp.reduce(gains))
            for j, (_, _, outs) in enumerate(rw):
                key = edit_key(decode_segments(tok, inputs, segments, outs), back)
                shares[key] += p[j] / len(variants)
                tops[key] += j == 0
                if v == 0:
                    original.setdefault(key, outs)
        inputs, labels, inserts, segments, _ = variants[0]
        ref = label_outputs(inputs, labels, inserts, segments, delete_id=tok.mask_id, end_id=tok.eos_id)
        ref_key = tuple(h.fixed_text for h in data.records[len(out)].hunks)
        greedy = mine[0].greedy(params.eval.max_edits)  # the fix `hrm evaluate` scores
        vote = max(shares, key=shares.get) if shares else None
        vote_outs = original.get(vote)
        out.append({
            "copies": len(variants),
            "greedy_exact": tuple(decode_segments(tok, inputs, segments, greedy)) == ref_key,
            "greedy_correct": score_outputs(greedy, ref, segments).token_correct,
            "vote_exact": vote == ref_key,
            "vote_share": shares.get(vote, 0.0),
            "vote_top_share": tops.get(vote, 0) / len(variants),
            "vote_correct": (score_outputs(vote_outs, ref, segments).token_correct
                             if vote_outs is not None else None),
            "copy_correct": score_outputs({}, ref, segments).token_correct,
        })
    return out


def sweep(rows: list[dict], field: str) -> list[str]:
    lines = []
    values = np.array([r[field] for r in rows])
    for t in sorted({float(np.quantile(values, q)) for q in (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)}):
        applied = [r for r in rows if r[field] >= t and r["vote_correct"] is not None]
        held = [r for r in rows if not (r[field] >= t and r["vote_correct"] is not None)]
        correct = sum(r["vote_correct"] for r in applied) + sum(r["copy_correct"] for r in held)
        copy = sum(r["copy_correct"] for r in rows)
        lines.append(f"| {field} >= {t:.3f} | {len(applied)} | {sum(r['vote_exact'] for r in applied)} | "
                     f"{correct} | {copy} | {correct - copy:+d} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("."))
    ap.add_argument("--split", action="append")
    ap.add_argument("--copies", type=int, default=8)
    args = ap.parse_args()
    model, _ = load_for_inference(args.run / "artifacts" / "train" / "refinement" / "checkpoints",
                                  torch.device("cpu"))
    for split in args.split or ["val", "test"]:
        rows = row_votes(args.run, split, args.copies, model)
        n = len(rows)
        print(f"\n## {split}: {n} rows, {np.mean([r['copies'] for r in rows]):.1f} encodings per row")
        print(f"greedy (as evaluated): exact {sum(r['greedy_exact'] for r in rows)}, correct positions "
              f"{sum(r['greedy_correct'] for r in rows)}; vote, applied everywhere it can be: exact "
              f"{sum(r['vote_exact'] and r['vote_correct'] is not None for r in rows)}, correct "
              f"{sum(r['copy_correct'] if r['vote_correct'] is None else r['vote_correct'] for r in rows)}; copying "
              f"{sum(r['copy_correct'] for r in rows)}")
        print("\n| rule | rows applied | exact | correct positions | copying's | difference |")
        print("|---|---|---|---|---|---|")
        for field in ("vote_share", "vote_top_share"):
            print("\n".join(sweep(rows, field)))


if __name__ == "__main__":
    main()
