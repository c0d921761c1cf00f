"""Load the reverse-learning control model (`hrm.train.control`) for the paired comparison, and
refuse one that is not the model's control: another tokenizer, another sequence shape, other
epochs, or a model config that differs in more than the feedback path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrm.train.checkpoint import CheckpointInfo
from hrm.train.loop import OPERATIONAL_TRAIN_KEYS

# What may differ between the model's recorded config and its control's.
_ABLATED = {"reverse_feedback"}
# Train settings that do not change what is trained (the control runs no per-epoch val pass
# and no end-of-phase train evaluation).
_NOT_COMPARED_TRAIN = OPERATIONAL_TRAIN_KEYS | {"val_every_epochs", "val_max_rows", "train_eval_max_rows"}


@dataclass(frozen=True)
class LoadedControl:
    """The control model and what its checkpoint says, or why there is none."""

    model: Any = None
    info: CheckpointInfo | None = None
    reason: str | None = None
    """Why no control is compared (None when `model` is set)."""

    def describe(self) -> dict[str, Any]:
        """What metrics.json records of a loaded control (`reverse_learning_control`)."""
        return {"checkpoint": self.info.path, "phase": self.info.phase, "step": self.info.step,
                "global_epoch": self.info.global_epoch}


def load_control(control_dir: str | Path, model_info: CheckpointInfo, device) -> LoadedControl:
    """The trained control in `control_dir` of the model described by `model_info`, or, when its
    record says none was trained, the reason. InputError naming the file when the control does
    not match the model."""
    from hrm.errors import InputError
    from hrm.train.checkpoint import load_for_inference
    from hrm.train.control import read_control

    record = read_control(control_dir)
    if not record.trained:
        return LoadedControl(reason=record.reason)
    control, info = load_for_inference(Path(control_dir) / record.checkpoint, device)
    problems = []
    if info.tokenizer_fingerprint != model_info.tokenizer_fingerprint:
        problems.append("another tokenizer")
    if (info.seq_len, info.vocab_size) != (model_info.seq_len, model_info.vocab_size):
        problems.append(f"seq_len/vocab {info.seq_len}/{info.vocab_size} against "
                        f"{model_info.seq_len}/{model_info.vocab_size}")
    # The same epochs over the same seeded data stream. Not the same optimizer steps: an ACT
    # batch takes in new rows as its rows halt, so the step count of an epoch follows the
    # model's own halting (the cpu profile's model and control differ by about 0.5%).
    if (info.phase, info.global_epoch) != (model_info.phase, model_info.global_epoch):
        problems.append(f"phase {info.phase} epoch {info.global_epoch} against the model's phase "
                        f"{model_info.phase} epoch {model_info.global_epoch}")
    differ = sorted(k for k in set(info.model_config) | set(model_info.model_config)
                    if k not in _ABLATED and info.model_config.get(k) != model_info.model_config.get(k))
    if differ:
        problems.append(f"model settings {differ} differ")
    mine, theirs = info.train_config or {}, model_info.train_config or {}
    differ = sorted(k for k in set(mine) | set(theirs)
                    if k not in _NOT_COMPARED_TRAIN and mine.get(k) != theirs.get(k))
    if differ:
        problems.append(f"train settings {differ} differ")
    if info.weights != model_info.weights:
        problems.append(f"{info.weights} weights against the model's {model_info.weights}")
    if info.model_config.get("reverse_feedback"):
        problems.append("the control has the feedback path on")
    if problems:
        raise InputError("not the control of the evaluated model: " + "; ".join(problems)
                         + " (rerun `hrm train-control` with the model's params)", path=info.path)
    return LoadedControl(model=control, info=info)
