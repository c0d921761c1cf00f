"""Load the reverse-learning control model (`hrm.train.control`) for the paired comparison, and
refuse one that is not the model's control: another tokenizer, another sequence shape, other
steps, or a model config that differs in more than the feedback path."""

from __future__ import annotations

from pathlib import Path

from hrm.train.checkpoint import CheckpointInfo

# What may differ between the model's recorded config and its control's.
_ABLATED = {"reverse_feedback"}


def load_control(control_dir: str | Path, model_info: CheckpointInfo, device):
    """(control model, None) when `control_dir` holds a trained control of the model described by
    `model_info`; (None, reason) when its record says none was trained. InputError naming the
    file when the control does not match the model."""
    from hrm.errors import InputError
    from hrm.train.checkpoint import load_for_inference
    from hrm.train.control import read_control

    record = read_control(control_dir)
    if not record.trained:
        return None, record.reason
    control, info = load_for_inference(Path(control_dir) / record.checkpoint, device)
    problems = []
    if info.tokenizer_fingerprint != model_info.tokenizer_fingerprint:
        problems.append("another tokenizer")
    if (info.seq_len, info.vocab_size) != (model_info.seq_len, model_info.vocab_size):
        problems.append(f"seq_len/vocab {info.seq_len}/{info.vocab_size} against "
                        f"{model_info.seq_len}/{model_info.vocab_size}")
    if (info.phase, info.step, info.global_epoch) != (model_info.phase, model_info.step, model_info.global_epoch):
        problems.append(f"phase {info.phase} step {info.step} epoch {info.global_epoch} against the "
                        f"model's phase {model_info.phase} step {model_info.step} epoch {model_info.global_epoch}")
    differ = sorted(k for k in set(info.model_config) | set(model_info.model_config)
                    if k not in _ABLATED and info.model_config.get(k) != model_info.model_config.get(k))
    if differ:
        problems.append(f"model settings {differ} differ")
    if info.model_config.get("reverse_feedback"):
        problems.append("the control has the feedback path on")
    if problems:
        raise InputError("not the control of the evaluated model: " + "; ".join(problems)
                         + " (rerun `hrm train-control` with the model's params)", path=info.path)
    return control, None
