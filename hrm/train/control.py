"""The control model of the reverse-learning ablation: the same phases, data, seed and epochs as
the model, with the L->H feedback path off (`model.reverse_feedback: false`).

The model builds its feedback weights from a random stream of their own
(`hrm.model.hrm.FEEDBACK_SEED_OFFSET`), so the control starts from the model's other weights
and reads the same seeded stream of rows and random draws: the two differ in the path alone.
Their optimizer steps may not match: an ACT batch takes in new rows as its rows halt, so the
steps of an epoch follow each model's halting (measured on the cpu profile: 644 / 22 / 7 steps
per phase for the model, 647 / 21 / 6 for the control). The evaluation compares their per-row losses on the same rows
(`reverse_learning_integration`, a sign test; docs/metrics.md).

Layout of `out_dir`: one directory per phase (`checkpoints/`, `history.csv`, `summary.json`, as
`hrm train` writes them) and `control.json`, which says whether a control was trained and, if
so, its final checkpoint (relative to `out_dir`) and its steps per phase. When the profile turns
the control off (`train.reverse_control: false`) or the model has no feedback path, only
`control.json` is written, with the reason: the evaluation then reports the metric as not
measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hrm.config import Params

CONTROL_FILE = "control.json"


@dataclass(frozen=True)
class ControlRecord:
    """What `control.json` says."""

    trained: bool
    reason: str | None = None
    """Why no control was trained (None when one was)."""
    checkpoint: str | None = None
    """The final phase's checkpoint, relative to the control directory."""
    steps: dict[str, int] | None = None
    """Optimizer steps per phase."""

    def to_json(self) -> dict:
        return {"trained": self.trained, "reason": self.reason, "checkpoint": self.checkpoint,
                "steps": self.steps}


def control_params(params: Params) -> Params:
    """`params` with the feedback path off and no per-epoch val pass (the evaluation compares
    the two models on val; the control's own curves are not needed)."""
    return params.model_copy(update={
        "model": params.model.model_copy(update={"reverse_feedback": False}),
        "train": params.train.model_copy(update={"val_every_epochs": 0}),
    })


def skip_reason(params: Params) -> str | None:
    """Why this configuration trains no control (None: it trains one)."""
    if not params.model.reverse_feedback:
        return "the model has no feedback path (model.reverse_feedback: false): nothing to ablate"
    if not params.train.reverse_control:
        return "no control model was trained (train.reverse_control: false)"
    return None


def train_control(params: Params, sequences_dir: str | Path, tokenizer_dir: str | Path,
                  out_dir: str | Path, *, track: bool = True) -> ControlRecord:
    """Train the control through every phase of `params.train.phases` (each resuming from the
    previous one, as the model's stages do) into `out_dir/<phase>`, and write `control.json`."""
    import os

    from hrm.train.run import run_phase

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Under torchrun (the gpu profile's DDP, like the model's phases) rank 0 writes the record.
    is_main = int(os.environ.get("RANK", "0")) == 0
    reason = skip_reason(params)
    if reason is not None:
        record = ControlRecord(trained=False, reason=reason)
    else:
        cfg = control_params(params)
        previous = None
        steps: dict[str, int] = {}
        for phase in cfg.train.phases:
            result = run_phase(cfg, phase.name, sequences_dir, tokenizer_dir, out / phase.name,
                               resume_from=previous, track=track,
                               run_name=f"train:control:{phase.name}", final_eval=False,
                               pipeline_params=params)
            if is_main and result.checkpoint is None:
                raise RuntimeError(f"control phase {phase.name} wrote no checkpoint under {out / phase.name}")
            steps[phase.name] = int(result.summary.get("phase_steps", 0))
            previous = result.checkpoint if is_main else out / phase.name / "checkpoints"
        record = ControlRecord(trained=True, checkpoint=str(Path(previous).relative_to(out)), steps=steps)
    if is_main:
        (out / CONTROL_FILE).write_text(json.dumps(record.to_json(), indent=1) + "\n")
    return record


def read_control(control_dir: str | Path) -> ControlRecord:
    """`control.json` of a control directory; InputError naming the file when it is missing or
    malformed."""
    from hrm.errors import InputError
    from hrm.json_input import read_json_strict

    path = Path(control_dir) / CONTROL_FILE
    raw = read_json_strict(path, missing="no control record (run `hrm train-control`)")
    if not isinstance(raw, dict) or not isinstance(raw.get("trained"), bool):
        raise InputError("expected an object with a boolean 'trained'", path=str(path))
    if raw["trained"] and not isinstance(raw.get("checkpoint"), str):
        raise InputError("a trained control must name its 'checkpoint'", path=str(path))
    if not raw["trained"] and not isinstance(raw.get("reason"), str):
        raise InputError("an untrained control must give its 'reason'", path=str(path))
    steps = raw.get("steps")
    return ControlRecord(trained=raw["trained"], reason=raw.get("reason"),
                         checkpoint=raw.get("checkpoint"),
                         steps={str(k): int(v) for k, v in steps.items()} if isinstance(steps, dict) else None)
