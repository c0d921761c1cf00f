"""The HRM training pipeline as a KFP v2 DAG: the same steps, in the same order, as dvc.yaml.

    params -> ingest -> validate -> split -> corpus -> tokenizer -> sequences
      -> train(foundation) -> train(optimisation) -> train(refinement)
         and beside them train_control (the reverse-learning control)
      -> evaluate(val), evaluate(test) -> gate -> If(verdict == "promote") promote / Else flag

The DAG's shape (which phases, which evaluation splits) is fixed when it is compiled, from the
params file given to `build_pipeline`; the values every step reads come at run time from the
`params` (a mapping) and `profile` pipeline parameters, whose defaults are that same file, with
the run's overrides (`epochs_scale`, `lr_scale`, `criteria_json`) merged in by the first task,
`params`, whose output every other task reads. Each task's display name is the DVC stage it
mirrors (`STAGE_OF_TASK`), which is what the parity test and the KFP UI show. The pipeline's
output is the registry action of the gate branch that ran (`pipelines.local.BRANCH_OF_ACTION`).
"""

# No `from __future__ import annotations`: KFP reads the pipeline signature as types.

import json
from collections.abc import Callable
from pathlib import Path

from hrm.config import ConfigError, parse_params, read_params_file
from pipelines import resources

PIPELINE_NAME = "hrm-swe"

# The phases and evaluation splits the components were written for: the gate component takes
# one input per phase and per split, so a params file that names others cannot be compiled.
PHASES = ("foundation", "optimisation", "refinement")
EVAL_SPLITS = ("val", "test")
PROMOTE = "promote"

# Task display name -> dvc.yaml stage (foreach entries as `stage@item`). `params` resolves the
# profile and the run's overrides (DVC reads params.yaml directly: no stage). `ingest` mirrors
# `hrm data materialise` behind data.dvc (no stage); `promote` / `flag` are the two outcomes of
# the `gate` stage, which under DVC records the verdict and promotes in the same command.
STAGE_OF_TASK: dict[str, str | None] = {
    "params": None,
    "ingest": None,
    "validate": "validate",
    "split": "split",
    "corpus": "corpus",
    "tokenizer": "tokenizer",
    "sequences": "sequences",
    **{f"train_{phase}": f"train_{phase}" for phase in PHASES},
    "train_control": "train_control",
    **{f"evaluate@{split}": f"evaluate@{split}" for split in EVAL_SPLITS},
    "gate": "gate",
    "promote": "gate",
    "flag": "gate",
}


def read_params_mapping(path: str | Path) -> dict:
    """params.yaml as a plain mapping (the `params` pipeline parameter): `hrm.config.read_params_file`."""
    return read_params_file(path)


def check_shape(raw: dict, source: str = "params.yaml") -> None:
    """Refuse params whose phases / eval splits differ from the ones the DAG is built for."""
    params = parse_params(raw, source=source)
    for profile in (raw.get("profiles") or {}) or [params.profile]:
        p = parse_params(raw, profile, source=source)
        phases = tuple(ph.name for ph in p.train.phases)
        if phases != PHASES:
            raise ConfigError(f"{source}: train.phases (profile {profile}) are {list(phases)}; "
                              f"the KFP pipeline is built for {list(PHASES)}")
        if tuple(p.eval.splits) != EVAL_SPLITS:
            raise ConfigError(f"{source}: eval.splits (profile {profile}) are {p.eval.splits}; "
                              f"the KFP pipeline is built for {list(EVAL_SPLITS)}")


def _apply(task, res: resources.TaskResources, *, cache: bool):
    """Resource requests, retries and caching for one task."""
    task.set_cpu_request(res.cpu_request).set_cpu_limit(res.cpu_limit)
    task.set_memory_request(res.memory_request).set_memory_limit(res.memory_limit)
    task.set_retry(res.retries, backoff_duration=resources.RETRY_BACKOFF, backoff_factor=2.0)
    task.set_caching_options(enable_caching=cache)
    return task


def build_pipeline(params_path: str | Path = "params.yaml") -> Callable:
    """Return the `@dsl.pipeline` function, its parameter defaults taken from `params_path`."""
    from kfp import dsl

    from components import steps

    raw_params = read_params_mapping(params_path)
    check_shape(raw_params, source=str(params_path))
    default_profile = parse_params(raw_params, source=str(params_path)).profile

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="HRM bug repair on SWE-smith: validate, split, tokenize, train in three "
        "phases, evaluate, gate, and promote or flag.",
    )
    def hrm_pipeline(
        params: str = json.dumps(raw_params),
        profile: str = default_profile,
        data_source: str = "",
        tracking_uri: str = "",
        gpus_per_task: int = 1,
        epochs_scale: float = 1.0,
        lr_scale: float = 1.0,
        criteria_json: str = "",
    ) -> str:
        """Parameters: params (params.yaml's content, profiles included, as JSON: one line,
        so it survives as a default; YAML text is accepted too), profile (tiny|cpu|gpu),
        data_source (overrides data.source; empty: the params' own), tracking_uri (MLflow
        server; empty: the params' own), gpus_per_task (GPUs per training pod; >1 runs
        torchrun), epochs_scale / lr_scale (multiply every phase's epochs, rounded and at
        least 1, / peak learning rate of the profile), criteria_json (a JSON list of
        {metric, op, threshold, split}: replaces gate.criteria; empty: the params' own).
        Returns the registry action of the gate branch that ran: `promoted`,
        `already_champion` or `guard_blocked` (verdict promote), `flagged` (verdict flag)."""
        res = steps.resolve_params(params=params, profile=profile, epochs_scale=epochs_scale,
                                   lr_scale=lr_scale, criteria_json=criteria_json)
        _apply(res.set_display_name("params"), resources.DATA, cache=True)
        cfg = dict(params=res.output, profile=profile)
        ctx = dict(cfg, tracking_uri=tracking_uri, pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER)

        ing = steps.ingest(**cfg, data_source=data_source).set_display_name("ingest")
        _apply(ing, resources.DATA, cache=True)
        val = steps.validate(**ctx, snapshot=ing.outputs["snapshot"]).set_display_name("validate")
        _apply(val, resources.DATA, cache=True)
        validated = val.outputs["validated"]
        spl = steps.split(**ctx, validated=validated).set_display_name("split")
        _apply(spl, resources.DATA, cache=True)
        crp = steps.corpus(**ctx).set_display_name("corpus")
        _apply(crp, resources.DATA, cache=True)
        tok = steps.tokenizer(**ctx, validated=validated, splits=spl.outputs["splits"],
                              corpus_dir=crp.outputs["corpus_dir"])
        _apply(tok.set_display_name("tokenizer"), resources.DATA, cache=True)
        seq = steps.sequences(**ctx, validated=validated, splits=spl.outputs["splits"],
                              corpus_dir=crp.outputs["corpus_dir"],
                              tokenizer_dir=tok.outputs["tokenizer_dir"])
        _apply(seq.set_display_name("sequences"), resources.DATA, cache=True)

        trained = {}
        previous = None
        for phase in PHASES:
            kwargs = dict(ctx, phase=phase, gpus=gpus_per_task,
                          sequences_dir=seq.outputs["sequences_dir"],
                          tokenizer_dir=tok.outputs["tokenizer_dir"])
            if previous is not None:
                kwargs["previous"] = previous.outputs["model"]
            task = steps.train_phase(**kwargs).set_display_name(f"train_{phase}")
            # Training is never served from the cache by default: a re-run is usually meant to
            # re-train (new seed, new code in the image). Opt in per run with the KFP API's
            # enable_caching, which overrides every task's setting.
            _apply(task, resources.TRAIN, cache=False)
            task.set_accelerator_type(resources.GPU_RESOURCE)
            task.set_accelerator_limit(gpus_per_task)
            trained[phase] = task
            previous = task
        final = trained[PHASES[-1]]
        ctl = steps.train_control(**ctx, gpus=gpus_per_task, sequences_dir=seq.outputs["sequences_dir"],
                                  tokenizer_dir=tok.outputs["tokenizer_dir"])
        ctl.set_display_name("train_control")
        _apply(ctl, resources.TRAIN, cache=False)
        ctl.set_accelerator_type(resources.GPU_RESOURCE)
        ctl.set_accelerator_limit(gpus_per_task)

        evals = {}
        for split_name in EVAL_SPLITS:
            ev = steps.evaluate(**ctx, split=split_name, model=final.outputs["model"],
                                control=ctl.outputs["control"],
                                tokenizer_dir=tok.outputs["tokenizer_dir"],
                                sequences_dir=seq.outputs["sequences_dir"], validated=validated)
            _apply(ev.set_display_name(f"evaluate@{split_name}"), resources.EVAL, cache=False)
            evals[split_name] = ev

        gt = steps.gate(
            **ctx,
            eval_val=evals["val"].outputs["evaluation"],
            eval_test=evals["test"].outputs["evaluation"],
            train_foundation=trained["foundation"].outputs["model"],
            train_optimisation=trained["optimisation"].outputs["model"],
            train_refinement=trained["refinement"].outputs["model"],
        ).set_display_name("gate")
        _apply(gt, resources.DATA, cache=False)

        with dsl.If(gt.outputs["Output"] == PROMOTE, name="verdict-promote"):
            pro = steps.promote(**ctx, decision=gt.outputs["decision"],
                                model=final.outputs["model"],
                                tokenizer_dir=tok.outputs["tokenizer_dir"])
            pro.set_display_name("promote")
            _apply(pro, resources.DATA, cache=False)
        with dsl.Else(name="verdict-flag"):
            flg = steps.flag(**ctx, decision=gt.outputs["decision"],
                             model=final.outputs["model"],
                             tokenizer_dir=tok.outputs["tokenizer_dir"])
            flg.set_display_name("flag")
            _apply(flg, resources.DATA, cache=False)
        return dsl.OneOf(pro.outputs["Output"], flg.outputs["Output"])

    return hrm_pipeline


def compile_pipeline(out: str | Path, params_path: str | Path = "params.yaml") -> Path:
    """Compile the pipeline to KFP IR YAML at `out` (what the KFP UI uploads)."""
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(params_path), package_path=str(out))
    return out
