"""Per-epoch training history: accumulators, rows, and the history.csv/json and summary.json files
the gate reads. Columns are fixed (HISTORY_COLUMNS); a value that could not be computed in an
epoch (e.g. no row halted) is written as null / an empty CSV cell, never as a made-up number.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch

HISTORY_COLUMNS = (
    "phase", "epoch", "step", "loss", "lm_loss", "q_halt_loss", "q_continue_loss", "token_accuracy",
    "edit_accuracy", "exact_accuracy", "q_halt_accuracy", "act_steps", "lr", "tokens_per_s",
    "wall_time_s", "val_lm_loss", "val_token_accuracy", "val_edit_accuracy", "val_exact_accuracy",
    "skipped_steps",
)
"""The `val_*` columns hold the clean evaluation of the val split (`train.val_every_epochs`); they
are empty in epochs without a val pass, and throughout when it is off or there is no val split.
`token_accuracy`: share of labelled positions right (with `model.head_positions`, estimated
from the sampled kept positions, each standing for `keep_scale` of them); `edit_accuracy`: share
of the edited positions (output not the position's own token) right: copying scores 0 there.
`skipped_steps`: optimizer steps of the epoch that fp16's GradScaler skipped on a gradient
overflow (0 without fp16)."""

# Order of the sums in an accumulator tensor (summed across ranks with one all_reduce).
_SUMS = ("loss", "lm_loss", "q_halt_loss", "q_continue_loss", "steps", "tok_correct", "tok_total",
         "seq_correct", "seq_total", "q_correct", "act_steps", "tokens", "skipped_steps",
         "edit_correct", "edit_total")


class EpochAccumulator:
    """Running sums for one epoch on one rank. Loss columns are means over optimizer steps; accuracy
    columns count rows when they halt (the prediction an example ends with)."""

    def __init__(self) -> None:
        self.sums = torch.zeros(len(_SUMS), dtype=torch.float64)

    def add(self, name: str, value: float) -> None:
        self.sums[_SUMS.index(name)] += value

    def state_dict(self) -> dict:
        return {"sums": self.sums.clone()}

    def load_state_dict(self, state: dict) -> None:
        sums = state["sums"].clone()
        # Checkpoints written before a sum was added hold a shorter vector: the new sums start at 0.
        self.sums = torch.cat([sums, torch.zeros(len(_SUMS) - len(sums), dtype=sums.dtype)])

    @staticmethod
    def row(sums: torch.Tensor, **extra) -> dict:
        s = dict(zip(_SUMS, sums.tolist(), strict=True))

        def ratio(a: str, b: str) -> float | None:
            return s[a] / s[b] if s[b] > 0 else None

        row = {
            "loss": ratio("loss", "steps"),
            "lm_loss": ratio("lm_loss", "steps"),
            "q_halt_loss": ratio("q_halt_loss", "steps"),
            "q_continue_loss": ratio("q_continue_loss", "steps"),
            "token_accuracy": ratio("tok_correct", "tok_total"),
            "edit_accuracy": ratio("edit_correct", "edit_total"),
            "exact_accuracy": ratio("seq_correct", "seq_total"),
            "q_halt_accuracy": ratio("q_correct", "seq_total"),
            "act_steps": ratio("act_steps", "seq_total"),
            "tokens": s["tokens"],
            "skipped_steps": round(s["skipped_steps"]),
        }
        row.update(extra)
        return row


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_history(out_dir: Path, rows: list[dict]) -> None:
    """history.csv and history.json with exactly HISTORY_COLUMNS."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = [{c: _clean(r.get(c)) for c in HISTORY_COLUMNS} for r in rows]
    with open(out_dir / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        for r in clean:
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    (out_dir / "history.json").write_text(json.dumps(clean, indent=2))


def write_summary(out_dir: Path, summary: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps({k: _clean(v) for k, v in summary.items()}, indent=2))
