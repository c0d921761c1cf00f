"""What the greedy fix is chosen from, compared on one checkpoint: the rewrites of the buggy code
(`eval.fix_space: rewrites`) against the best single edit (`edits`), for the trained model and
for the untrained model of the same shape (whose choice among the rewrites is random).

Per split and bug kind: rows, rows whose reference fix is among the rewrites (as text), greedy
exact fixes under each space, and rows whose fix is among the first 13 search candidates (the cpu
search budget when this was measured; it now checks 4). Exact match against the reference only, no tests, so it takes seconds. Usage:

    .venv/bin/python benchmarks/fix_space.py --run-dir . [--phase refinement] [--splits val,test]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET = 13


def main() -> None:
    from hrm.config import load_params
    from hrm.eval.evaluate import search_candidates, untrained_model
    from hrm.eval.model_pass import run_model_pass
    from hrm.eval.rewrite_outputs import split_rewrites
    from hrm.sequences import decode_segments, load_split
    from hrm.tokenizer import load_tokenizer
    from hrm.train.checkpoint import load_for_inference

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=ROOT)
    ap.add_argument("--phase", default="refinement")
    ap.add_argument("--splits", default="val,test")
    args = ap.parse_args()
    run = args.run_dir
    params = load_params(run / "params.yaml")
    tok = load_tokenizer(run / "artifacts/tokenizer")
    model, _ = load_for_inference(run / f"artifacts/train/{args.phase}/checkpoints", torch.device("cpu"))
    fresh = untrained_model(params, model)
    kw = dict(end_id=tok.eos_id, delete_id=tok.mask_id, batch_size=32, halt_on_q=False,
              positions=params.eval.search.positions, alternatives=params.eval.search.alternatives,
              ablation=False)
    for split in args.splits.split(","):
        data = load_split(run / "artifacts/sequences", split)
        started = time.monotonic()
        rewrites = split_rewrites(tok, data, data.meta.slots)
        seconds = time.monotonic() - started
        refs = [[h.fixed_text for h in r.hunks] for r in data.records]

        def fixes(i, outputs, _refs=refs, _data=data):
            return decode_segments(tok, _data.inputs[i], _data.records[i].segments, outputs) == _refs[i]

        passes = {(name, space): run_model_pass(net, data, rewrites=rw, **kw).proposals
                  for name, net in (("model", model), ("untrained", fresh))
                  for space, rw in (("rewrites", rewrites), ("edits", None))}
        table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for i, record in enumerate(data.records):
            row = table[record.kind]
            row["rows"] += 1
            row["covered"] += any(fixes(i, o) for _, o in rewrites[i])
            for (name, space), props in passes.items():
                row[f"{name} {space}"] += fixes(i, props[i].greedy(params.eval.max_edits))
                row[f"{name} {space} in {BUDGET}"] += any(
                    fixes(i, c) for c in search_candidates(props[i], BUDGET, params.eval.max_edits))
        table["all"] = sum(table.values(), collections.Counter())
        cols = ["rows", "covered", "model rewrites", "model edits", "untrained rewrites",
                "untrained edits", f"model rewrites in {BUDGET}", f"model edits in {BUDGET}",
                f"untrained rewrites in {BUDGET}"]
        print(f"\n{split}: {len(data)} rows, rewrites {sum(map(len, rewrites))} "
              f"(median {sorted(map(len, rewrites))[len(rewrites) // 2]} per row), made in {seconds:.1f} s")
        print("| kind | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        for kind in sorted(table, key=lambda k: (k == "all", k)):
            print(f"| {kind} | " + " | ".join(str(table[kind][c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
