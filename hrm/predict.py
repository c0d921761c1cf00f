"""`hrm predict`: SWE-bench predictions for a file of instances.

One JSON line per instance, in the format the SWE-bench and SWE-smith harnesses read:

    {"instance_id": ..., "model_name_or_path": ..., "model_patch": "<unified diff>", ...}

`model_patch` turns the BUGGY tree (the repository with the instance's `patch` applied) into the
model's fix; it is '' when the model proposes nothing (the instance does not fit its rows, or
its output is not code), with the reason beside it. Our own fields sit beside the three
standard ones: `hrm_reason`, `hrm_functions`, `hrm_fixed_code` (the proposed code of each
function shown, as decoded, special tokens included), `hrm_code_truncated`, `hrm_q_halt`,
`hrm_change_probability`, `hrm_checkpoint_sha256`, `hrm_context`.

Localisation: the model reads the whole functions the instance's bug touches (`hrm.regions`,
as in training and evaluation): the patch names the functions, never the lines. Where a
repository snapshot exists (`params.envs`), the diff is of whole files; otherwise the regions are
the patch's hunks and the diff carries their lines only (`regions_patch`). A function longer
than the model's rows is cut to its first lines by the training rule (blind to where the bug is),
so such a prediction can only change those lines (`hrm_code_truncated`).

`score_predictions` runs a predictions file's patches through the instances' own tests in the
sandbox (`hrm.eval.execution`), the way `hrm evaluate` judges its greedy fix: the same resolved
set for the same model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hrm.config import EnvsConfig
from hrm.data.instance import Instance, read_instances
from hrm.errors import InputError
from hrm.repairer import Proposal, Repairer

PREDICTION_KEYS = ("instance_id", "model_name_or_path", "model_patch")
"""The SWE-bench predictions fields."""
EMPTY_PATCH = "empty model_patch: not a fix (tests not run)"


@dataclass
class PredictSummary:
    instances: int
    with_patch: int
    """Predictions whose model_patch is not empty."""
    reasons: dict[str, int] = field(default_factory=dict)
    """Why the others are empty, counted."""


def buggy_files(instance: Instance, read_fixed) -> dict[str, str] | None:
    """The files the instance's patch touches, as they read with the bug (snapshot + patch), or
    None when the snapshot lacks one or the patch does not match it."""
    from hrm.hunks import parse_patch
    from hrm.regions import patched_files

    files = patched_files(parse_patch(instance.patch, source=instance.instance_id), read_fixed)
    return None if isinstance(files, str) else {path: buggy for path, (_, buggy) in files.items()}


def _patch(proposal: Proposal, files: dict[str, str] | None) -> str:
    from hrm.eval.execution import to_hunks
    from hrm.eval.patches import prediction_patch, regions_patch

    hunks = to_hunks(proposal.hunks)
    if files is not None:
        return prediction_patch(hunks, proposal.texts, files)
    return regions_patch(hunks, proposal.texts)


def _repository_cache(inst: Instance, regions, files: dict[str, str] | None, envs: EnvsConfig | None,
                      ncfg) -> list[list[str]] | None:
    """The naturalness cache of an instance, built as `hrm evaluate` builds it: its repository's
    sources in their buggy state without the regions shown (None: no snapshot)."""
    from hrm.envs import get_environment
    from hrm.envs.errors import EnvironmentUnavailable
    from hrm.eval.fusion import repository_cache

    if envs is None or files is None:
        return None
    try:
        tree = getattr(get_environment(inst.repo, envs), "pristine", None)
    except EnvironmentUnavailable:
        return None
    if tree is None:
        return None
    return repository_cache(Path(tree), files, [(r.file, r.buggy_start, r.buggy_text) for r in regions],
                            inst.patch, ncfg.cache_max_tokens)


def predict_instances(repairer: Repairer, instances_path: str | Path, out_path: str | Path, *,
                      model_name: str, envs: EnvsConfig | None) -> PredictSummary:
    """Write one prediction per instance of `instances_path` to `out_path` (JSONL)."""
    from hrm.regions import patch_regions
    from hrm.sequences import snapshot_reader

    instances = read_instances(instances_path)
    if not instances:
        raise InputError("no instances", path=str(instances_path))
    read = snapshot_reader(envs)
    items, contexts, files = [], [], []
    for inst in instances:
        def read_fixed(path, repo=inst.repo):
            return read(repo, path)

        regions, context = patch_regions(inst.patch, read_fixed, source=inst.instance_id)
        items.append((inst.problem_statement, regions))
        contexts.append(context)
        files.append(buggy_files(inst, read_fixed) if context == "file" else None)
    caches = None
    if repairer.naturalness is not None:
        caches = [_repository_cache(inst, regions, fs, envs, repairer.params.eval.naturalness)
                  for inst, (_, regions), fs in zip(instances, items, files, strict=True)]
    proposals = repairer.propose(items, caches=caches)
    summary = PredictSummary(instances=len(instances), with_patch=0)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for inst, prop, context, fs in zip(instances, proposals, contexts, files, strict=True):
            row = {"instance_id": inst.instance_id, "model_name_or_path": model_name,
                   "model_patch": "", "hrm_reason": "", "hrm_functions": [],
                   "hrm_fixed_code": [],
                   "hrm_code_truncated": False, "hrm_q_halt": None,
                   "hrm_change_probability": None,
                   "hrm_checkpoint_sha256": repairer.checkpoint_sha256, "hrm_context": context}
            if isinstance(prop, str):
                row["hrm_reason"] = prop
            else:
                row.update(hrm_functions=[h.function for h in prop.hunks],
                           hrm_fixed_code=list(prop.texts),
                           hrm_code_truncated=prop.code_truncated,
                           hrm_q_halt=round(prop.q_halt, 6),
                           hrm_change_probability=round(prop.change_probability, 6))
                if not prop.is_code:
                    row["hrm_reason"] = ("special tokens in the output, not code: "
                                         + ", ".join(prop.special_tokens))
                else:
                    row["model_patch"] = _patch(prop, fs)
                    if not row["model_patch"]:
                        row["hrm_reason"] = ("kept: no rewrite reads more naturally than the buggy "
                                             "code (eval.naturalness)" if prop.abstained
                                             else "the model proposes no change")
            if row["model_patch"]:
                summary.with_patch += 1
            else:
                key = row["hrm_reason"].split(":")[0]
                summary.reasons[key] = summary.reasons.get(key, 0) + 1
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out_path)
    return summary


def read_predictions(path: str | Path) -> list[dict]:
    """A predictions JSONL file; a bad line is an InputError naming file and line."""
    from hrm.json_input import iter_jsonl

    rows = []
    for lineno, row in iter_jsonl(path, missing="predictions file not found"):
        if not isinstance(row, dict):
            raise InputError(f"a prediction is a JSON object, got {type(row).__name__}",
                             path=str(path), line=lineno)
        missing = [k for k in PREDICTION_KEYS if not isinstance(row.get(k), str)]
        if missing:
            raise InputError(f"missing or non-string {', '.join(missing)}", path=str(path),
                             line=lineno)
        rows.append(row)
    return rows


def score_predictions(predictions_path: str | Path, instances_path: str | Path, envs: EnvsConfig,
                      *, max_pass_to_pass: int, allow_unconfined: bool = False
                      ) -> dict[str, dict[str, object]]:
    """instance_id -> {"resolved": bool | None, "reason": str} for every prediction: its patch
    applied to the buggy tree and the instance's tests run in the sandbox. An empty patch is
    not a fix (False, not run, as the SWE-bench harness counts it); None: the instance has no
    environment."""
    from hrm.eval.execution import NO_ENVIRONMENT, ExecutionTier

    instances = {i.instance_id: i for i in read_instances(instances_path)}
    tier = ExecutionTier(envs, instances, max_pass_to_pass, allow_unconfined=allow_unconfined)
    out: dict[str, dict[str, object]] = {}
    for row in read_predictions(predictions_path):
        iid = row["instance_id"]
        if iid not in instances:
            raise InputError(f"prediction for {iid!r}, which is not in the instances file",
                             path=str(predictions_path))
        if not row["model_patch"]:
            out[iid] = {"resolved": False, "reason": EMPTY_PATCH}
            continue
        outcome = tier.run_patch(iid, row["model_patch"])
        no_env = outcome.reason.startswith(NO_ENVIRONMENT)
        out[iid] = {"resolved": None if no_env else outcome.resolved,
                    "reason": outcome.reason}
    return out
