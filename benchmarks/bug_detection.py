"""Can the model tell a buggy function from the same function fixed?

`hrm repair` without `--function` picks the function of a file that the model is surest holds a
bug (`Proposal.change_probability`, its largest per-position probability of a change), and
always proposes a change. This scores each held-out row twice through the same path
(`hrm.repairer.Repairer.propose`): with its buggy functions, and with the same functions fixed
(the reference, i.e. clean code), the problem statement unchanged. Per score (change
probability, and the Q head's halting probability, which should be high when its output is
right): the AUC of "buggy scores higher than clean" (0.5: no signal), and how often the
buggy version outscores its own clean version. No tests run; seconds. Usage:

    .venv/bin/python benchmarks/bug_detection.py --run . [--split val]

`--run`: a directory with params.yaml and the artifacts of a `make run`.
"""

from __future__ import annotations

import json

import numpy as np


def auc(positive: list[float], negative: list[float]) -> float:
    """P(a positive scores above a negative), ties half (the Mann-Whitney U statistic)."""
    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def main() -> None:
    from abstention import run_arguments

    from hrm.config import load_params
    from hrm.regions import Region
    from hrm.repairer import Repairer

    args = run_arguments(__doc__.split("\n\n")[0])
    params = load_params(args.run / "params.yaml")
    rep = Repairer.load(args.checkpoint, args.run / "artifacts" / "tokenizer", params)
    records = [json.loads(line) for line in
               (args.run / "artifacts" / "sequences" / f"{args.split}.jsonl").read_text().splitlines()]
    buggy, clean = [], []
    for rec in records:
        regions = [Region(h["file"], h["buggy_start"], h["buggy_text"], h["fixed_text"], h["buggy_start"],
                          h["function"]) for h in rec["hunks"]]
        buggy.append((rec["statement"], regions))
        clean.append((rec["statement"], [Region(r.file, r.buggy_start, r.fixed_text, r.fixed_text,
                                                r.fixed_start, r.function) for r in regions]))
    scored = [(b, c) for b, c in zip(rep.propose(buggy), rep.propose(clean), strict=True)
              if not isinstance(b, str) and not isinstance(c, str)]
    print(f"{args.split}: {len(scored)} of {len(records)} rows scored, buggy and fixed")
    for name in ("change_probability", "q_halt"):
        b = [getattr(x, name) for x, _ in scored]
        c = [getattr(y, name) for _, y in scored]
        higher = sum(x > y for x, y in zip(b, c, strict=True))
        print(f"  {name}: mean buggy {np.mean(b):.4f}, fixed {np.mean(c):.4f}; AUC {auc(b, c):.3f}; "
              f"buggy above its own fixed version in {higher} of {len(scored)}")
    changed = sum(y.changed for _, y in scored)
    print(f"  proposals that change the fixed (clean) code: {changed} of {len(scored)}")


if __name__ == "__main__":
    main()
