"""Learning curve: held-out exact-fix rate against corpus size, at a fixed step budget.

One corpus is built from the profile's packages (all their mutations of the profile's kinds,
`--max-per-function` per function), one tokenizer is trained on all of it, and the held-out set
is the same kinds of mutations of a package the corpus never holds (tenacity 9.0.0 by default:
the pipeline's held-out repository). For each size N a balanced sample of N corpus rows trains
the profile's model for exactly `--steps` optimizer steps (the foundation phase's settings), and
the greedy fix (`hrm.eval.proposals`) is compared with the reference on every held-out row.
Writes `learning_curve.json` and `learning_curve.png` to `--out`.

    .venv/bin/python benchmarks/learning_curve.py --sizes 300,3000,30000 --steps 400
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


CANDIDATES = 12
"""Search candidates whose coverage of the reference fix is counted (the greedy fix and 12 more:
the cpu profile's search budget when the curve was measured; it now checks 4)."""


class _Stop(Exception):
    pass


def _corpus(cfg, out: Path, heldout_pkg: str):
    from hrm.corpus.build import build_corpus

    built = build_corpus(cfg, out / "corpus", progress=False)
    from hrm.config import CorpusPackage

    held_cfg = cfg.model_copy(update={"packages": [CorpusPackage(package=heldout_pkg)], "max_per_function": 2,
                                      "max_rows": None})
    held = build_corpus(held_cfg, out / "heldout", progress=False)
    return built, held


def _unigram_scores(seq_dir: Path, tok_dir: Path) -> tuple[int, int]:
    """(held-out exact fixes, fixes among its first `CANDIDATES` search candidates) of the
    unigram guess (`hrm.eval.baselines`) fitted on the same training rows: the
    do-nothing-clever baseline each size is compared with (copying the buggy code is never an
    exact fix, by definition)."""
    from hrm.eval.baselines import fit_unigram
    from hrm.sequences import decode_segments, load_split
    from hrm.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_dir)
    guess = fit_unigram(load_split(seq_dir, "corpus"), delete_id=tok.mask_id, end_id=tok.eos_id)
    data = load_split(seq_dir, "val")
    exact = among = 0
    for i, r in enumerate(data.records):
        ref = [h.fixed_text for h in r.hunks]
        cands = guess.candidates(data.inputs[i], r.segments, CANDIDATES)
        exact += bool(cands) and decode_segments(tok, data.inputs[i], r.segments, cands[0]) == ref
        among += any(decode_segments(tok, data.inputs[i], r.segments, c) == ref for c in cands)
    return exact, among


def _train_and_score(params, seq_dir: Path, tok_dir: Path, out: Path, steps: int) -> dict:
    """Train `steps` steps on the corpus rows of `seq_dir`, then score the model and the
    untrained model of the same shape (its choice among the rewrites is random) on the
    held-out rows."""
    from hrm.eval.evaluate import untrained_model
    from hrm.eval.rewrite_outputs import split_rewrites
    from hrm.sequences import load_split
    from hrm.tokenizer import load_tokenizer
    from hrm.train.checkpoint import load_for_inference
    from hrm.train.data import load_train_arrays
    from hrm.train.loop import train_phase

    arrays = load_train_arrays(seq_dir, "corpus")
    # Rows may halt after one ACT segment, so an epoch can be as short as rows / batch steps:
    # plan enough epochs for that and stop at `steps`.
    per_epoch = max(1, len(arrays.inputs) // params.train.batch_size)
    phase = params.train.phases[0].model_copy(update={"epochs": max(1, -(-steps // per_epoch) + 1)})
    params = params.model_copy(update={"train": params.train.model_copy(update={
        "phases": [phase], "checkpoint_every_steps": steps, "val_every_epochs": 0})})

    def stop(info):
        if info.step > steps:
            raise _Stop

    started = time.monotonic()
    try:
        train_phase(params, phase.name, arrays, out, final_eval=False, progress=False, on_step=stop,
                    tokenizer_dir=tok_dir)
    except _Stop:
        pass
    seconds = time.monotonic() - started
    ckpt = sorted((out / "checkpoints").glob(f"step-{steps:08d}.pt"))
    if not ckpt:
        raise RuntimeError(f"no checkpoint at step {steps} in {out / 'checkpoints'}")
    model, _ = load_for_inference(ckpt[0])
    tok = load_tokenizer(tok_dir)
    data = load_split(seq_dir, "val")
    rewrites = split_rewrites(tok, data, data.meta.slots)
    trained = _score(model, tok, data, rewrites)
    fresh = _score(untrained_model(params, model), tok, data, rewrites)
    return {"train_rows": len(arrays.inputs), "steps": steps, "train_seconds": round(seconds, 1),
            "heldout_rows": len(data.records), **trained,
            "exact_rate": trained["exact"] / max(len(data.records), 1),
            "untrained_exact": fresh["exact"],
            f"untrained_fix_among_{CANDIDATES}_candidates": fresh[f"fix_among_{CANDIDATES}_candidates"]}


def _score(model, tok, data, rewrites) -> dict:
    """Greedy exact fixes (by kind), the bug's position ranked first / in the top 5, and the
    fix among the first `CANDIDATES` search candidates, of one model on the held-out rows."""
    import collections

    import numpy as np

    from hrm.eval.proposals import propose
    from hrm.sequences import decode_segments

    anchors = [[s[0] for s in r.segments] for r in data.records]
    props = propose(model, data.inputs, data.labels, anchors, end_id=tok.eos_id,
                    delete_id=tok.mask_id, ignore_index=-100, positions=16, alternatives=3,
                    batch_size=32, rewrites=rewrites)
    by_kind: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    exact = top1 = top5 = among = 0
    for i, (record, prop) in enumerate(zip(data.records, props, strict=True)):
        ref = [h.fixed_text for h in record.hunks]
        ok = decode_segments(tok, data.inputs[i], record.segments, prop.greedy()) == ref
        exact += ok
        by_kind[record.kind][0] += ok
        by_kind[record.kind][1] += 1
        edited = set(np.flatnonzero((data.labels[i] != -100) & (data.labels[i] != data.inputs[i])).tolist())
        edited |= {int(x) for x in data.inserts[i][:, 0] if x >= 0}
        top1 += bool(prop.rank[:1]) and prop.rank[0] in edited
        top5 += bool(edited & set(prop.rank[:5]))
        among += any(decode_segments(tok, data.inputs[i], record.segments, c) == ref
                     for c, _ in prop.candidates(CANDIDATES))
    return {"exact": exact, "location_top1": top1, "location_top5": top5,
            f"fix_among_{CANDIDATES}_candidates": among,
            "by_kind": {k: {"exact": v[0], "rows": v[1]} for k, v in sorted(by_kind.items())}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--sizes", default="300,3000,30000")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--max-per-function", type=int, default=8)
    ap.add_argument("--heldout", default="tenacity==9.0.0")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "learning_curve"))
    ap.add_argument("--train-set", default="",
                    help="train settings over the profile's, as JSON, e.g. '{\"pointer_weight\": 0}'")
    ap.add_argument("--baselines-only", action="store_true",
                    help="add the unigram baseline to an existing run's learning_curve.json")
    args = ap.parse_args(argv)
    if args.baselines_only:
        out = Path(args.out)
        doc = json.loads((out / "learning_curve.json").read_text())
        for size, res in zip(args.sizes.split(","), doc["results"], strict=True):
            res["unigram_exact"], res[f"unigram_fix_among_{CANDIDATES}_candidates"] = _unigram_scores(
                out / f"n{size}" / "sequences", out / "tokenizer")
        (out / "learning_curve.json").write_text(json.dumps(doc, indent=1) + "\n")
        _plot(doc, out)
        print(json.dumps([{k: r[k] for k in ("corpus_rows", "exact", "unigram_exact")} for r in doc["results"]]))
        return 0

    from tqdm import tqdm

    from hrm.config import TokenizerConfig, load_params
    from hrm.corpus.build import balanced_sample
    from hrm.corpus.rows import CorpusRow, read_rows, write_rows
    from hrm.sequences import ALL_SPLITS, DROP_REASONS, corpus_examples, write_sequences
    from hrm.tokenizer import build_tokenizer

    params = load_params(args.params, args.profile)
    if args.train_set:
        params = params.model_copy(update={"train": params.train.model_validate(
            {**params.train.model_dump(), **json.loads(args.train_set)})})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = params.corpus.model_copy(update={"max_rows": None, "max_per_function": args.max_per_function,
                                           "cache_dir": str(ROOT / params.corpus.cache_dir)})
    built, held = _corpus(cfg, out, args.heldout)
    rows = read_rows(out / "corpus" / "corpus.jsonl")
    (out / "empty.jsonl").write_text("")
    (out / "splits.json").write_text(json.dumps({"splits": {}}))
    tok_dir = out / "tokenizer"
    build_tokenizer(out / "empty.jsonl", out / "splits.json", tok_dir,
                    TokenizerConfig(**params.tokenizer.model_dump()),
                    corpus_path=out / "corpus" / "corpus.jsonl")
    from hrm.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_dir)
    held_examples = corpus_examples(out / "heldout" / "corpus.jsonl")
    for ex in held_examples:
        ex.split = "val"
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        chosen = balanced_sample([r.__dict__ for r in rows], size, params.corpus.seed)
        sub = out / f"n{size}"
        sub.mkdir(exist_ok=True)
        write_rows(sub / "corpus.jsonl", [CorpusRow(**r) for r in sorted(chosen, key=lambda r: r["id"])])
        dropped = {s: dict.fromkeys(DROP_REASONS, 0) for s in ALL_SPLITS}
        write_sequences(corpus_examples(sub / "corpus.jsonl") + held_examples, tok, sub / "sequences",
                        params.sequences, dropped=dropped, fingerprint="learning-curve",
                        progress=False, desc="sequences", tqdm=tqdm)
        res = _train_and_score(params, sub / "sequences", tok_dir, sub / "train", args.steps)
        uni_exact, uni_among = _unigram_scores(sub / "sequences", tok_dir)
        res.update({"corpus_rows": len(chosen), "unigram_exact": uni_exact,
                    f"unigram_fix_among_{CANDIDATES}_candidates": uni_among})
        results.append(res)
        print(json.dumps({k: v for k, v in res.items() if k != "by_kind"}), flush=True)
    doc = {"profile": args.profile, "steps": args.steps, "heldout": args.heldout, "train_set": args.train_set,
           "corpus_available": built.rows, "heldout_rows_built": held.rows, "results": results}
    (out / "learning_curve.json").write_text(json.dumps(doc, indent=1) + "\n")
    _plot(doc, out)
    print(f"wrote {out / 'learning_curve.json'} and {out / 'learning_curve.png'}")
    return 0


def _plot(doc: dict, out: Path) -> None:
    """The model's held-out exact-fix rate per corpus size, and the share of rows whose fix is
    among its first search candidates, each beside the unigram guess fitted on the same rows
    and the untrained model (copying the buggy code is never an exact fix: 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = doc["results"]
    sizes = [r["corpus_rows"] for r in results]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(sizes, [r["exact_rate"] for r in results], "o-", label="HRM (greedy fix)")
    ax.plot(sizes, [r["unigram_exact"] / r["heldout_rows"] for r in results], "s--", color="grey",
            label="unigram guess, same rows")
    among = f"fix_among_{CANDIDATES}_candidates"
    if all(among in r for r in results):
        ax.plot(sizes, [r[among] / r["heldout_rows"] for r in results], "o:", color="C0", alpha=0.6,
                label=f"HRM, fix among its {CANDIDATES} search candidates")
        ax.plot(sizes, [r[f"unigram_{among}"] / r["heldout_rows"] for r in results], "s:", color="grey",
                alpha=0.6, label=f"unigram, among its {CANDIDATES}")
    if all("untrained_exact" in r for r in results):
        ax.plot(sizes, [r["untrained_exact"] / r["heldout_rows"] for r in results], "^--", color="C3",
                label="untrained model (a random rewrite)")
        ax.plot(sizes, [r[f"untrained_{among}"] / r["heldout_rows"] for r in results], "^:", color="C3",
                alpha=0.6, label=f"untrained, among its {CANDIDATES}")
    ax.axhline(0.0, color="black", linewidth=0.8, label="copy the buggy code (0 by definition)")
    ax.set_xscale("log")
    ax.set_xlabel("corpus rows (balanced over kinds)")
    ax.set_ylabel(f"held-out exact-fix rate\n({doc['heldout']})")
    ax.set_title(f"{doc['profile']} model, {doc['steps']} steps each")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=120)
    plt.close(fig)

if __name__ == "__main__":
    sys.exit(main())
