"""`prepare_transfer`: external rows the model has trained on are dropped and listed in
overlap.json with the reason and the train row they match (same instance_id, same diff, or an
edit of a top-level function of the same repository and file that a train row edits, in any
scope its hunks touch); the rest are kept and encoded."""

from __future__ import annotations

import json
from dataclasses import replace

from hrm.data.instance import write_instances
from hrm.eval.transfer import diff_key, prepare_transfer

from .conftest import TENACITY


def _generated(env, file: str, function: str, kind: str, instance_id: str):
    """An instance whose patch mutates `function` in the pristine tenacity tree (no tests run:
    the transfer only reads its diff)."""
    from hrm.data.instance import Instance
    from hrm.synth.mutations import apply_site, enumerate_sites

    source = (env.pristine / file).read_text(encoding="utf-8")
    site = next(s for s in enumerate_sites(source, file)
                if s.function == function and s.kind == kind)
    with env.working_copy() as tree:
        (tree / file).write_text(apply_site(source, site), encoding="utf-8")
        patch = env.diff(tree)
    return Instance(instance_id, TENACITY, patch, f"{function} misbehaves.", ["t::x"], [])


def test_rows_trained_on_are_dropped_with_the_reason(instances, sample_path, built,
                                                     tenacity_env, eval_params, tmp_path):
    env, _cfg = tenacity_env
    by_suffix = {i.instance_id.rsplit(".", 1)[-1]: i for i in instances}
    trained = by_suffix["func_basic__2xgiyq9x"]          # wait_exponential.__call__
    trained_pr = by_suffix["pr_390"]    # its 4th hunk starts in BaseRetrying, reaches Retrying
    both = by_suffix["combine_file__zg0hlvr9"]          # wait_incrementing + wait_exponential
    fresh = by_suffix["func_basic__rlm5c89z"]            # wait_fixed.__call__: never trained on
    renamed = replace(trained, instance_id=trained.instance_id.rsplit("__", 1)[0] + "__copy0001",
                      patch=trained.patch.replace("@@ -", "@@ -1", 1))
    assert diff_key(renamed.patch) == diff_key(trained.patch)
    retrying = _generated(env, "tenacity/__init__.py", "Retrying.__call__", "ctrl_invert_if",
                          "jd__tenacity.0d40e76f.func_pm_ctrl_invert_if__gen00001")
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"splits": {trained.instance_id: "train",
                                             trained_pr.instance_id: "train",
                                             both.instance_id: "val", fresh.instance_id: "test"}}))
    external = tmp_path / "external.jsonl"  # temporary, never a repository file
    write_instances(external, [trained, renamed, both, fresh, retrying])

    prep = prepare_transfer(external, sample_path, splits, built / "tok", tmp_path / "out",
                            eval_params.sequences, envs=eval_params.envs)
    overlap = json.loads((tmp_path / "out" / "overlap.json").read_text())
    dropped = {d["instance_id"]: d for d in overlap["dropped"]}
    assert dropped == {
        trained.instance_id: {"instance_id": trained.instance_id,
                              "reason": "same instance_id as a train row",
                              "train_row": trained.instance_id},
        renamed.instance_id: {"instance_id": renamed.instance_id,
                              "reason": "same diff as a train row",
                              "train_row": trained.instance_id},
        both.instance_id: {"instance_id": both.instance_id,
                           "reason": "edits tenacity/wait.py:wait_exponential, a function "
                                     "trained on", "train_row": trained.instance_id},
        retrying.instance_id: {"instance_id": retrying.instance_id,
                               "reason": "edits tenacity/__init__.py:Retrying, a function "
                                         "trained on", "train_row": trained_pr.instance_id},
    }
    assert (prep.external, prep.kept, prep.same_function_as_train) == (5, 1, 2)
    assert overlap["kept"] == 1 and overlap["sequence_rows"] == prep.sequence_rows == 1
    kept = [json.loads(line) for line in
            (tmp_path / "out" / "instances.jsonl").read_text().splitlines()]
    assert [k["instance_id"] for k in kept] == [fresh.instance_id]
    records = [json.loads(line) for line in
               (tmp_path / "out" / "sequences" / "test.jsonl").read_text().splitlines()]
    assert [r["instance_id"] for r in records] == [fresh.instance_id]
    assert records[0]["context"] == "file"  # whole functions from the environment's snapshot

