"""Run SWE-search over a split, batch by batch, without keeping full logits.

Per batch the model runs ONCE for all ACT segment counts: a forward hook on the model captures
every segment of a `halt_max_steps` run (with `halt_on_q=False`, segment s of that run is what
`run_inference(max_steps=s)` returns; tested) and reduces its target-region logits on the
device to top-2 ids and probabilities plus q_halt (`SourceView`). The greedy run (a second run
only when `eval.halt_on_q` is set) gives its view and the per-row samples, drawn right away;
its logits are then dropped. Host memory per batch is O(B * T * halt_max_steps), not
O(B * T * V * halt_max_steps).
"""

from __future__ import annotations

import zlib

import numpy as np
from tqdm import tqdm

from hrm.config import Params
from hrm.eval.search import (
    TOP_K,
    Sample,
    SearchOutcome,
    SourceView,
    max_samples,
    search_metrics,
    search_row,
    verify,
)


def _views(logits, q_halt, name: str, chosen=None) -> list[SourceView]:
    """Per-row views of [B, T, V] target-region logits (reduced on their device)."""
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    top_p, top_i = probs.topk(TOP_K, dim=-1)
    conf = None
    if chosen is not None:
        conf = probs.gather(-1, chosen.to(probs.device).unsqueeze(-1)).squeeze(-1).cpu().numpy()
    top_i, top_p = top_i.cpu().numpy().astype(np.int64), top_p.cpu().numpy()
    q = q_halt.float().cpu().numpy()
    return [SourceView(name, top_i[j], top_p[j], float(q[j]),
                       None if conf is None else conf[j]) for j in range(top_i.shape[0])]


def draw_samples(logits, n: int, temperature: float, seed: int) -> list[Sample]:
    """`n` samples of every position of one row's [T, V] logits at `temperature` (inverse CDF
    on the logits' device, uniforms from a numpy generator seeded by `seed`), with each drawn
    token's untempered probability."""
    import torch

    logits = logits.float()
    cum = torch.softmax(logits / temperature, dim=-1).cumsum(-1)
    u = np.random.default_rng(seed).random((logits.shape[0], n)).astype(np.float32)
    ids = torch.searchsorted(cum.contiguous(), torch.from_numpy(u).to(cum.device))
    ids = ids.clamp_(max=logits.shape[-1] - 1)
    probs = torch.softmax(logits, dim=-1).gather(-1, ids)
    ids_np, probs_np = ids.T.cpu().numpy().astype(np.int64), probs.T.cpu().numpy()
    return [Sample(ids_np[k], probs_np[k]) for k in range(n)]


def segment_views(model, x, start: int) -> list[list[SourceView]]:
    """One `halt_max_steps` run (no Q halting); per segment s = 1..halt_max_steps, the rows'
    views named `act_steps=s`."""
    from hrm.model.inference import run_inference, unwrap

    net = unwrap(model)
    captured: list[list[SourceView]] = []

    def hook(_module, _args, out):
        captured.append(_views(out.logits[:, start:], out.q_halt,
                               f"act_steps={len(captured) + 1}"))

    handle = net.register_forward_hook(hook)
    try:
        run_inference(model, x, max_steps=net.cfg.halt_max_steps, halt_on_q=False)
    finally:
        handle.remove()
    if len(captured) != net.cfg.halt_max_steps:
        raise RuntimeError(f"captured {len(captured)} segments, expected {net.cfg.halt_max_steps}")
    return captured


def run_search(model, data, mp, model_rows, decode, buggy, refs, scorer, params: Params,
               ) -> tuple[list[SearchOutcome], dict[str, float | None]]:
    """Search every row; returns per-row outcomes and the split's search metrics."""
    import torch

    from hrm.model.inference import run_inference

    cfg = params.eval.search
    ignore = data.meta.ignore_index
    start = data.meta.prompt_len
    outcomes: list[SearchOutcome] = []
    tiered: list[float | None] = []
    bs = params.eval.batch_size
    n_samples = max_samples(cfg)
    bar = tqdm(total=len(data), desc="search", unit="row", leave=False)
    for b0 in range(0, len(data), bs):
        x = torch.as_tensor(data.inputs[b0:b0 + bs])
        segments = segment_views(model, x, start)
        chosen = torch.as_tensor(mp.pred_ids[b0:b0 + bs, start:])
        o = run_inference(model, x, halt_on_q=params.eval.halt_on_q)
        greedy_logits = o.logits[:, start:]
        greedy_views = _views(greedy_logits, o.q_halt, "greedy", chosen)
        seeds = [params.train.seed * 1_000_003 + zlib.crc32(r.instance_id.encode())
                 for r in data.records[b0:b0 + bs]]
        samples = [draw_samples(greedy_logits[j], n_samples, cfg.temperature, seeds[j])
                   for j in range(x.shape[0])]
        del o, greedy_logits
        for j in range(x.shape[0]):
            i = b0 + j
            record = data.records[i]
            ctx = scorer.context(record)
            bug = [h.buggy_text for h in record.hunks]
            outcome = search_row(
                greedy_ids=mp.pred_ids[i].copy(),
                greedy=greedy_views[j],
                steps=[seg[j] for seg in segments[:-1]],
                samples=samples[j],
                target_start=start,
                decode=decode,
                check=lambda hunks, q, _ctx=ctx, _bug=bug: verify(_ctx, hunks, q, scorer, _bug),
                cfg=cfg,
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
