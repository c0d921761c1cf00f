"""Run SWE-search over a split: model logits per ACT segment count, batch by batch (so only one
batch of [T, V] logits is held at a time), then `search.search_row` per row."""

from __future__ import annotations

import zlib

from tqdm import tqdm

from hrm.config import Params
from hrm.eval.search import SearchOutcome, search_metrics, search_row, verify


def run_search(model, data, mp, model_rows, decode, buggy, refs, scorer, params: Params,
               ) -> tuple[list[SearchOutcome], dict[str, float | None]]:
    """Search every row; returns per-row outcomes and the split's search metrics."""
    import torch

    from hrm.model.inference import run_inference, unwrap

    cfg = params.eval.search
    ignore = data.meta.ignore_index
    start = data.meta.prompt_len
    max_steps = unwrap(model).cfg.halt_max_steps
    outcomes: list[SearchOutcome] = []
    tiered: list[float | None] = []
    bs = params.eval.batch_size
    bar = tqdm(total=len(data), desc="search", unit="row", leave=False)
    for b0 in range(0, len(data), bs):
        x = torch.as_tensor(data.inputs[b0:b0 + bs])
        runs = []
        for s in range(1, max_steps):
            o = run_inference(model, x, max_steps=s)
            runs.append((f"act_steps={s}", o.logits[:, start:].cpu().numpy(), o.q_halt.cpu().numpy()))
        o = run_inference(model, x, halt_on_q=params.eval.halt_on_q)
        runs.append(("greedy", o.logits[:, start:].cpu().numpy(), o.q_halt.cpu().numpy()))
        for j in range(x.shape[0]):
            i = b0 + j
            record = data.records[i]
            ctx = scorer.context(record)
            outcome = search_row(
                greedy_ids=mp.pred_ids[i].copy(),
                greedy_q=float(mp.q_halt[i]),
                step_logits=[(n, lg[j], float(q[j])) for n, lg, q in runs],
                target_start=start,
                decode=decode,
                check=lambda hunks, q, _ctx=ctx: verify(_ctx, hunks, q, scorer),
                cfg=cfg,
                seed=params.train.seed * 1_000_003 + zlib.crc32(record.instance_id.encode()),
            )
            outcomes.append(outcome)
            if outcome.best_source == "greedy":
                tiered.append(model_rows[i].tier_score)
            else:
                tiered.append(scorer.score(record, outcome.best_ids, data.labels[i], ignore,
                                           buggy[i], outcome.best_hunks, refs[i]).tier_score)
            bar.update(1)
    bar.close()
    return outcomes, search_metrics(outcomes, tiered)
