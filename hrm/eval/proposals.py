"""What the model proposes for a row: the greedy fix and the ranked alternative edits.

From one inference pass (`hrm.model.inference.run_inference`), each labelled position (a
segment's anchor or a code token, `hrm.sequences`) has a handful of *options*, each an output
with its log-probability under the model's heads (the first output token and the insert decision
are independent given the state; inserted tokens are read greedily from the token head):

    keep            [own]              log p(first = own) + log(1 - p_insert)
    replace by t    [t]                log p(first = t)   + log(1 - p_insert)   (top tokens t)
    delete          []                 log p(first = <mask>) + log(1 - p_insert)
    insert after    [own, x...]        log p(first = own) + log p_insert + log q(x...)

(the anchor never replaces: its options are keep and insert). Positions are ranked by how likely
they change, 1 - P(keep); only the `positions` most likely get their options computed.

Without rewrites, the greedy fix is the best single edit: the (position, change) whose
log-probability gains most over keeping that position (every instance holds a bug, so an output
identical to the buggy code is never proposed), plus other positions whose best option is a change, up to `max_edits`
(`eval.max_edits`, default 1: training's location loss puts one bug location per row, and on
held-out mutations the one-edit fix was exact twice as often as taking every position's best
option; BENCHMARKS.md "Repair ability").

Rewrites (`eval.fix_space: rewrites`, the default): the caller may also pass each row's
*rewrites* (`hrm.eval.rewrite_outputs`: every small rewrite of one expression of the buggy code,
`hrm.rewrites`, in output form). Each is scored by the same rule as a single edit, summed over
the positions it changes: its gain is the log-probability of its outputs minus keeping those
positions. The greedy fix is then the best rewrite (a row with none falls back to the best
single edit): the model chooses among fixes that read as code, including the multi-position
ones (a name of several tokens) that one edit cannot express; a swap is one position, its
pivot, outputting `<|swap|>` (`hrm.swaps`), as in the training labels. On the cpu
recipe's val split this fixed 12 of 50 rows exactly against 8 for the best single edit
(BENCHMARKS.md "Rewrites").

Candidates (SWE-search): the rewrites, best gain first, then the single edits, best gain first,
then the joint choices over the top positions, positions independent, enumerated best first
exactly (a lazy heap over each position's options sorted by log-probability). The unchanged code
is never a candidate.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

Outputs = dict[int, tuple[int, ...]]
"""Row position -> output tokens, for the positions that change."""


@dataclass(frozen=True)
class Option:
    output: tuple[int, ...]
    logp: float
    keep: bool


@dataclass(frozen=True)
class RowProposal:
    """One row's per-position options (the most likely changed positions only)."""

    options: dict[int, list[Option]]
    """Position -> options, best first (the keep option among them)."""
    change_prob: dict[int, float]
    """Position -> 1 - P(keep), for the positions with options."""
    q_halt: float
    rank: list[int] = field(default_factory=list)
    """The positions, most likely to change first."""
    rewrites: list[tuple[float, str, Outputs]] = field(default_factory=list)
    """The row's scored rewrites as (gain, kind, outputs), best first (empty when none were
    passed or the code has none); after `hrm.eval.fusion.fuse`, in the fused order."""
    naturalness: list[float] = field(default_factory=list)
    """After `fuse`: per rewrite (same order), log p(fixed) - log p(buggy) under the n-gram
    model; empty otherwise."""
    abstain: bool = False
    """After `fuse`: the best rewrite reads no more naturally than the buggy code, so the
    prediction keeps the buggy code (`prediction`)."""

    def single_edits(self) -> list[tuple[float, int, tuple[int, ...]]]:
        """Every one-position change as (gain, position, output), best first: the gain is the
        change's log-probability minus keeping that position's token, i.e. how much likelier the
        row becomes with this change alone than with no change."""
        edits = []
        for pos, opts in self.options.items():
            keep = next(o.logp for o in opts if o.keep)
            edits += [(o.logp - keep, pos, o.output) for o in opts if not o.keep]
        return sorted(edits, key=lambda e: (-e[0], e[1]))

    def greedy(self, max_edits: int | None = 1) -> Outputs:
        """The fix: the best rewrite when the row has any; otherwise the best single edit (every
        instance holds a bug, so an output identical to the buggy code is never proposed), plus,
        up to `max_edits` changed positions in all (None: no limit), the other positions whose
        best option is a change. The default of one matches training's location loss, which
        puts one bug location per row."""
        if self.rewrites:
            return dict(self.rewrites[0][2])
        out: Outputs = {}
        for gain, pos, output in self.single_edits():
            if pos in out:
                continue
            if out and (gain <= 0 or (max_edits is not None and len(out) >= max_edits)):
                break
            out[pos] = output
        return out

    def prediction(self, max_edits: int | None = 1) -> Outputs:
        """What the row's prediction changes: the greedy fix, or nothing where the proposal
        abstains (`hrm.eval.fusion`). The search starts from `greedy` either way."""
        return {} if self.abstain else self.greedy(max_edits)

    def candidates(self, limit: int, max_edits: int | None = 1) -> list[tuple[Outputs, float]]:
        """Up to `limit` distinct changed outputs with their log-probability (relative to keeping
        the ranked positions). The rewrites first (best gain first); then, with `max_edits` 1,
        the single edits (best gain first: one bug location per row) and the joint choices over
        several positions; otherwise the joint choices alone, best first (`joint_candidates`)."""
        keep_all = sum(next(o.logp for o in opts if o.keep) for opts in self.options.values())
        out = [(dict(outputs), keep_all + gain) for gain, _, outputs in self.rewrites[:limit]]
        if max_edits != 1:
            return _distinct(out + self.joint_candidates(limit), limit)
        out += [({pos: output}, keep_all + gain) for gain, pos, output in self.single_edits()[:limit]]
        out = _distinct(out, limit)
        if len(out) < limit:
            # Only a row with fewer rewrites and single edits than `limit` gets here; its joint
            # choices then depend on `limit`, so a smaller budget is not always a prefix of a
            # larger one's list (with 16 positions x 3 alternatives never in practice).
            out = _distinct(out + [c for c in self.joint_candidates(limit) if len(c[0]) > 1], limit)
        return out

    def joint_candidates(self, limit: int) -> list[tuple[Outputs, float]]:
        """Up to `limit` distinct changed outputs, best joint log-probability first (positions
        independent)."""
        positions = list(self.rank)
        options = [self.options[p] for p in positions]
        if not options:
            return []

        def score(state: tuple[int, ...]) -> float:
            return sum(options[j][i].logp for j, i in enumerate(state))

        best = tuple(0 for _ in options)
        heap = [(-score(best), best)]
        seen = {best}
        out: list[tuple[Outputs, float]] = []
        while heap and len(out) < limit:
            neg, state = heapq.heappop(heap)
            chosen = {positions[j]: options[j][i].output for j, i in enumerate(state)
                      if not options[j][i].keep}
            if chosen:
                out.append((chosen, -neg))
            for j in range(len(state)):
                if state[j] + 1 < len(options[j]):
                    nxt = state[:j] + (state[j] + 1,) + state[j + 1:]
                    if nxt not in seen:
                        seen.add(nxt)
                        heapq.heappush(heap, (-score(nxt), nxt))
        return out


def _distinct(cands: list[tuple[Outputs, float]], limit: int) -> list[tuple[Outputs, float]]:
    """The first `limit` candidates with distinct outputs, in order."""
    out: list[tuple[Outputs, float]] = []
    seen: set[tuple] = set()
    for outputs, score in cands:
        key = tuple(sorted(outputs.items()))
        if key not in seen:
            seen.add(key)
            out.append((outputs, score))
        if len(out) >= limit:
            break
    return out


def _rest(logp: torch.Tensor, end_id: int) -> tuple[tuple[int, ...], float]:
    """Greedy inserted tokens (up to `end`) and their log-probability from [K - 1, V]."""
    tokens: list[int] = []
    total = 0.0
    for k in range(logp.shape[0]):
        tok = int(logp[k].argmax())
        total += float(logp[k, tok])
        if tok == end_id:
            break
        tokens.append(tok)
    return tuple(tokens), total


def row_options(first_logp: torch.Tensor, insert_logit: float, rest: tuple[tuple[int, ...], float],
                own: int, *, anchor: bool, delete_id: int, alternatives: int) -> list[Option]:
    """The options of one position (see the module docstring), best first."""
    log_ins = float(torch.nn.functional.logsigmoid(torch.tensor(insert_logit)))
    log_no = float(torch.nn.functional.logsigmoid(torch.tensor(-insert_logit)))
    own_lp = 0.0 if anchor else float(first_logp[own])
    keep_out: tuple[int, ...] = () if anchor else (own,)
    opts = [Option(keep_out, own_lp + log_no, True)]
    rest_tokens, rest_lp = rest
    if rest_tokens:
        opts.append(Option(keep_out + rest_tokens, own_lp + log_ins + rest_lp, False))
    if not anchor:
        top = torch.topk(first_logp, min(alternatives + 1, first_logp.shape[0])).indices.tolist()
        for tok in top:
            if tok == own:
                continue
            output = () if tok == delete_id else (int(tok),)
            opts.append(Option(output, float(first_logp[tok]) + log_no, False))
    opts.sort(key=lambda o: -o.logp)
    return opts


class _RowScorer:
    """Log-probabilities of any output at any position of one row, from one inference pass: the
    first output token and the insert decision from the heads, inserted tokens from `slot_lp`
    (position -> [K - 1, V] log-probabilities, for the positions that insert)."""

    def __init__(self, first_lp: torch.Tensor, insert_logits: torch.Tensor, own: torch.Tensor,
                 slot_lp: dict[int, torch.Tensor], anchors: set[int], *, end_id: int, delete_id: int):
        self.first_lp, self.own, self.slot_lp, self.anchors = first_lp, own, slot_lp, anchors
        self.log_ins = torch.nn.functional.logsigmoid(insert_logits)
        self.log_no = torch.nn.functional.logsigmoid(-insert_logits)
        self.end_id, self.delete_id = end_id, delete_id

    def _rest(self, pos: int, rest: tuple[int, ...]) -> float:
        lp = self.slot_lp[pos]
        total = sum(float(lp[k, t]) for k, t in enumerate(rest))
        return total + (float(lp[len(rest), self.end_id]) if len(rest) < lp.shape[0] else 0.0)

    def output(self, pos: int, output: tuple[int, ...]) -> float:
        """log P(position `pos` outputs `output`) (the module docstring's options)."""
        if pos in self.anchors:
            return float(self.log_no[pos]) if not output else float(self.log_ins[pos]) + self._rest(pos, output)
        first = output[0] if output else self.delete_id
        lp = float(self.first_lp[pos, first])
        if len(output) > 1:
            return lp + float(self.log_ins[pos]) + self._rest(pos, tuple(output[1:]))
        return lp + float(self.log_no[pos])

    def gain(self, outputs: Outputs) -> float:
        """How much likelier the row is with `outputs` than with those positions kept."""
        keep = {p: () if p in self.anchors else (int(self.own[p]),) for p in outputs}
        return sum(self.output(p, tuple(o)) - self.output(p, keep[p]) for p, o in outputs.items())


def _inserting(outputs: Outputs, anchors: set[int]) -> list[int]:
    return [p for p, o in outputs.items() if len(o) > (0 if p in anchors else 1)]


def proposals_from(model: torch.nn.Module, res, inputs: torch.Tensor, labels: np.ndarray,
                   anchors: list[list[int]], *, end_id: int, delete_id: int, ignore_index: int,
                   positions: int, alternatives: int,
                   rewrites: Sequence[Sequence[tuple[str, Outputs]]] | None = None) -> list[RowProposal]:
    """The proposals of one batch from its inference output `res` (`run_inference`);
    `rewrites[b]` (optional): row b's rewrites as (kind, outputs), scored and ranked here."""
    from hrm.model.inference import slot_logits
    from hrm.model.losses import keep_log_probs

    x = inputs
    first_logp = torch.log_softmax(res.logits, dim=-1)
    keep_lp = keep_log_probs(first_logp, x, res.insert_logits).cpu().numpy()
    log_no_np = torch.nn.functional.logsigmoid(-res.insert_logits.float()).cpu().numpy()
    rows_t, pos_t, per_row = [], [], []
    for b in range(len(x)):
        labelled = np.flatnonzero(labels[b] != ignore_index)
        row_anchors = {int(a) for a in anchors[b]}
        keep = np.where(np.isin(labelled, list(row_anchors)), log_no_np[b, labelled],
                        keep_lp[b, labelled])
        change = -np.expm1(keep)
        order = np.argsort(-change, kind="stable")[:positions]
        top = [int(labelled[k]) for k in order]
        per_row.append((top, {int(labelled[k]): float(change[k]) for k in order}, row_anchors))
        rows_t += [b] * len(top)
        pos_t += top
    n_top = len(pos_t)
    for b in range(len(x)) if rewrites is not None else ():
        extra = sorted({p for _, outs in rewrites[b] for p in _inserting(outs, per_row[b][2])})
        rows_t += [b] * len(extra)
        pos_t += extra
    rest_lp = torch.log_softmax(slot_logits(model, res.z_H, torch.tensor(rows_t, dtype=torch.long),
                                            torch.tensor(pos_t, dtype=torch.long)), dim=-1).cpu()
    first_cpu = first_logp.cpu()
    ins_cpu = res.insert_logits.float().cpu()
    out: list[RowProposal] = []
    m = 0
    for b, (top, change, row_anchors) in enumerate(per_row):
        options = {}
        for pos in top:
            options[pos] = row_options(
                first_cpu[b, pos], float(ins_cpu[b, pos]), _rest(rest_lp[m], end_id), int(x[b, pos]),
                anchor=pos in row_anchors, delete_id=delete_id, alternatives=alternatives)
            m += 1
        scored: list[tuple[float, str, Outputs]] = []
        if rewrites is not None and rewrites[b]:
            slot_lp = {pos_t[k]: rest_lp[k] for k in range(n_top, len(pos_t)) if rows_t[k] == b}
            scorer = _RowScorer(first_cpu[b], ins_cpu[b], x[b], slot_lp, row_anchors,
                                end_id=end_id, delete_id=delete_id)
            scored = sorted(((scorer.gain(outs), kind, outs) for kind, outs in rewrites[b]),
                            key=lambda r: -r[0])
        out.append(RowProposal(options, change, float(res.q_halt[b]), top, scored))
    return out


def propose(model: torch.nn.Module, inputs: np.ndarray, labels: np.ndarray, anchors: list[list[int]],
            *, end_id: int, delete_id: int, ignore_index: int, positions: int, alternatives: int,
            batch_size: int, halt_on_q: bool = False,
            rewrites: Sequence[Sequence[tuple[str, Outputs]]] | None = None) -> list[RowProposal]:
    """Run the model on `inputs` [N, L] and propose, per row, changes over its labelled positions
    (`labels != ignore_index` only says WHERE the code is; `anchors[i]` lists row i's segment
    anchors). `positions`: how many of the most likely changed positions get options;
    `alternatives`: replacement tokens per position; `rewrites[i]` (optional): row i's rewrites
    (`hrm.eval.rewrite_outputs`) to score."""
    from hrm.model.inference import run_inference

    out: list[RowProposal] = []
    for start in range(0, len(inputs), batch_size):
        x = torch.as_tensor(np.asarray(inputs[start:start + batch_size]))
        res = run_inference(model, x, halt_on_q=halt_on_q)
        out += proposals_from(model, res, x, np.asarray(labels[start:start + batch_size]),
                              anchors[start:start + batch_size], end_id=end_id,
                              delete_id=delete_id, ignore_index=ignore_index, positions=positions,
                              alternatives=alternatives,
                              rewrites=None if rewrites is None else rewrites[start:start + batch_size])
    return out
