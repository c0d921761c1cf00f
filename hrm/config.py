"""Typed configuration: `params.yaml` loaded once into validated pydantic models.

`params.yaml` is the single source of truth. It holds base sections (`data`, `tokenizer`, ...)
and a `profiles` mapping whose entry named by `profile` is deep-merged over the base before
validation. Every field has a docstring; an invalid value raises `ConfigError` naming the key.

Each section class is owned by the step that reads it; steps receive only their section.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PARAMS_PATH = Path("params.yaml")
PROFILE_ENV_VAR = "HRM_PROFILE"


class ConfigError(ValueError):
    """A params file that cannot be loaded or validated; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


# --------------------------------------------------------------------------------------------
# data: ingestion and validation (hrm/data)
# --------------------------------------------------------------------------------------------
class DataConfig(_Section):
    source: str = "synth:tenacity"
    """Where `hrm data pull` reads instances: `hf:OWNER/NAME` (Hugging Face hub), a local
    .jsonl/.json/.parquet file, a directory of them, or `synth:ENV` (the offline generator)."""

    split: str = "train"
    """Dataset split to read from the hub."""

    limit: int | None = Field(default=None, ge=1)
    """Keep at most this many rows after filtering (None: all)."""

    repo_filter: list[str] = Field(default_factory=list)
    """Keep only rows whose `repo` (or `owner__name`) matches one of these substrings; empty: all."""

    format: Literal["swe-smith", "swe-bench"] = "swe-smith"
    """Input format. `swe-bench` rows (whose `patch` is the fix) are converted only when set."""

    snapshot: str = "data/instances.jsonl"
    """Raw snapshot written by `hrm data pull` (tracked by data.dvc)."""

    max_invalid_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    """`hrm data validate` fails when more than this share of rows is quarantined."""

    max_patch_lines: int = Field(default=2000, ge=1)
    """Upper bound on patch size in lines (checked with `mostly`)."""

    max_problem_statement_chars: int = Field(default=20000, ge=1)
    """Upper bound on problem statement length (checked with `mostly`)."""

    size_mostly: float = Field(default=0.95, gt=0.0, le=1.0)
    """Share of rows that must be within the size bounds above."""


# --------------------------------------------------------------------------------------------
# envs and synth: repository environments and the offline generator (hrm/envs, hrm/synth)
# --------------------------------------------------------------------------------------------
class EnvSpec(_Section):
    provider: Literal["sdist", "git", "image"] = "sdist"
    """How the working tree is obtained: a PyPI sdist, a local git checkout, or a container image."""

    package: str | None = None
    """sdist provider: the PyPI requirement pinned to a version, e.g. `tenacity==9.0.0`."""

    git_url: str | None = None
    """git provider: path or URL of a local repository."""

    git_commit: str | None = None
    """git provider: the commit to check out."""

    image: str | None = None
    """image provider: the image for instances whose `image_name` is empty (each instance's own
    `image_name` wins). None: SWE-smith's name derived from the repo id
    (`swesmith/{owner}__{repo}.{commit8}` -> `jyangballin/swesmith.x86_64.{owner}_1776_{repo}.{commit8}`)."""

    test_requirements: list[str] = Field(default_factory=list)
    """Extra packages installed into the environment to run the tests."""

    source_dirs: list[str] = Field(default_factory=list)
    """Directories of the tree that hold the package source (mutation targets for synth)."""

    test_dirs: list[str] = Field(default_factory=lambda: ["tests"])
    """Directories of the tree that hold its tests."""

    @model_validator(mode="after")
    def _provider_fields(self) -> EnvSpec:
        needed = {"sdist": "package", "git": "git_url", "image": None}[self.provider]
        if needed is not None and getattr(self, needed) in (None, ""):
            raise ValueError(f"provider '{self.provider}' needs '{needed}'")
        return self


class EnvsConfig(_Section):
    cache_dir: str = ".cache/hrm-envs"
    """Where built environments (one venv and pristine tree per repo id) are cached."""

    repos: dict[str, EnvSpec] = Field(default_factory=dict)
    """Environment specification per SWE-smith repo id (e.g. `swesmith/jd__tenacity.0d40e76f`)."""

    timeout_s: float = Field(default=60.0, gt=0)
    """Wall-clock limit of one sandboxed test run."""

    memory_mb: int = Field(default=2048, ge=64)
    """Address-space limit of one sandboxed test run."""

    max_processes: int = Field(default=256, ge=8)
    """Process-count limit (RLIMIT_NPROC) of one sandboxed run."""

    max_file_mb: int = Field(default=64, ge=1)
    """Largest file a sandboxed run may write."""

    max_tree_mb: int | None = Field(default=256, ge=1)
    """Disk quota of one sandboxed run: everything it writes in its tree and HOME together
    (held in a tmpfs, so in memory; the host disk is never written). null: no quota (writes
    go to the tree on disk, up to the disk's free space). Needs the mount namespace."""

    max_output_kb: int = Field(default=256, ge=1)
    """Captured stdout/stderr per run is truncated to this size."""

    sandbox_user: str | None = "nobody"
    """When the caller is root, sandboxed runs drop to this user (root ignores the process
    limit and may write anywhere); None: never drop."""

    sandbox_uid_range: tuple[int, int] | None = (60000, 1000)
    """(first uid, count): when dropping from root, each run leases its own uid from this
    range (its group stays `sandbox_user`'s). RLIMIT_NPROC counts every process of a uid on
    the host, so runs sharing one uid share one budget: one run's fork bomb would make every
    concurrent run fail to start. None: all runs use `sandbox_user`'s uid."""

    python: str | None = None
    """Base interpreter for environment venvs (None: this interpreter, or /usr/bin/python3
    when runs drop to `sandbox_user` and this one is not reachable by that user)."""

    container_runtime: str | None = None
    """image provider: the container CLI (`docker`, `podman` or a path) that runs the tests.
    None: the first of docker, podman whose `info` succeeds; none usable: the image provider
    raises EnvironmentUnavailable naming what is missing."""


class SynthConfig(_Section):
    envs: list[str] = Field(default_factory=lambda: ["swesmith/jd__tenacity.0d40e76f"])
    """Repo ids (keys of `envs.repos`) whose sources are mutated, in order; `synth:` generates
    from all of them into one snapshot, `synth:NAME` from one."""

    kinds: list[str] = Field(default_factory=lambda: list(_mutation_kinds()))
    """Mutation kinds tried (`hrm.synth.mutations.KINDS`), taken in turn."""

    seed: int = 0
    """Seed of the mutation search; the output is deterministic for a seed and environment."""

    max_instances: int = Field(default=60, ge=1)
    """Per environment: stop after keeping this many instances."""

    time_budget_s: float = Field(default=600.0, gt=0)
    """Per environment: stop after this many seconds of search."""

    workers: int = Field(default=2, ge=1)
    """Parallel worker processes."""

    max_pass_to_pass: int = Field(default=20, ge=0)
    """PASS_TO_PASS is a bounded sample of at most this many tests."""

    @model_validator(mode="after")
    def _known_kinds(self) -> SynthConfig:
        _check_kinds(self.kinds)
        if not self.envs:
            raise ValueError("envs: name at least one environment")
        return self


# --------------------------------------------------------------------------------------------
# corpus: mutations of pinned packages for the foundation phase (hrm/corpus)
# --------------------------------------------------------------------------------------------
class CorpusPackage(_Section):
    package: str
    """A pinned PyPI requirement `NAME==VERSION` whose sdist is mutated."""

    source_dirs: list[str] = Field(default_factory=list)
    """Directories of the sdist to mutate; empty: every module outside tests, docs, examples
    and tooling directories."""


class CorpusConfig(_Section):
    packages: list[CorpusPackage] = Field(default_factory=list)
    """The packages mutated; keep them disjoint from `envs.repos` (val/test functions live
    there; sequences drop any corpus function that also occurs in val or test, counted)."""

    cache_dir: str = ".cache/hrm-corpus"
    """Where downloaded sdists are unpacked (one directory per package, reused)."""

    seed: int = 0
    """Seed of the per-function choice of mutations and of the `max_rows` sample."""

    max_per_function: int = Field(default=4, ge=1)
    """Mutations kept per function, kinds taken in turn."""

    max_function_lines: int = Field(default=60, ge=1)
    """Functions longer than this (decorators included) are not mutated."""

    max_rows: int | None = Field(default=None, ge=1)
    """Keep a seeded sample of at most this many rows (None: all)."""

    kinds: list[str] = Field(default_factory=lambda: list(_mutation_kinds()))
    """Mutation kinds used (`hrm.synth.mutations.KINDS`)."""

    workers: int = Field(default=2, ge=1)
    """Processes mutating modules in parallel."""

    @model_validator(mode="after")
    def _known(self) -> CorpusConfig:
        _check_kinds(self.kinds)
        # as the sdist cache names them (`hrm.corpus.fetch.package_tree`: stripped, lower
        # case): two entries of one name would be fetched into one directory at once
        names = [p.package.strip().split("==")[0].strip().lower() for p in self.packages]
        if len(set(names)) != len(names):
            raise ValueError(f"packages: a package is listed twice ({names})")
        return self


def _mutation_kinds() -> tuple[str, ...]:
    from hrm.synth.mutations import KINDS

    return KINDS


def _check_kinds(kinds: list[str]) -> None:
    unknown = sorted(set(kinds) - set(_mutation_kinds()))
    if unknown:
        raise ValueError(f"kinds: unknown mutation kinds {unknown} (known: {list(_mutation_kinds())})")


# --------------------------------------------------------------------------------------------
# tokenizer and sequences (hrm/tokenizer.py, hrm/sequences)
# --------------------------------------------------------------------------------------------
class TokenizerConfig(_Section):
    vocab_size: int = Field(default=4096, ge=300)
    """Target vocabulary size of the byte-level BPE, special tokens included."""

    min_frequency: int = Field(default=2, ge=1)
    """Minimum pair frequency for a BPE merge."""


class SequencesConfig(_Section):
    seq_len: int = Field(default=384, ge=32)
    """Tokens per row: problem statement, separators, file headers and buggy code."""

    max_statement_tokens: int = Field(default=96, ge=0)
    """At most this many tokens of the problem statement."""

    min_statement_tokens: int = Field(default=24, ge=0)
    """The statement gives up room to code down to this many tokens (then code is windowed)."""

    slots: int = Field(default=4, ge=2)
    """K: output tokens a position can hold: the token that replaces it and K - 1 inserted
    after it (longer outputs are spread over their neighbours, `hrm.edits`)."""

    max_insertions: int = Field(default=16, ge=1)
    """E: positions inserting tokens a row may hold; rows with more are dropped (counted)."""

    split_seed: int = 1234
    """Seed of the train/val/test assignment."""

    val_fraction: float = Field(default=0.15, ge=0.0, lt=1.0)
    """Share of instances that go to validation (whole functions; see `held_out_repos`)."""

    test_fraction: float = Field(default=0.15, ge=0.0, lt=1.0)
    """Share of instances that go to test (whole functions)."""

    held_out_repos: list[str] = Field(default_factory=list)
    """Repo ids none of whose instances is trained on: their groups are dealt to val and test
    only, so val/test also measure a repository never seen."""

    held_out_val_share: float = Field(default=0.5, gt=0.0, lt=1.0)
    """Share of the held-out repositories' instances dealt to val (the rest to test)."""

    @model_validator(mode="after")
    def _budgets(self) -> SequencesConfig:
        if self.max_statement_tokens >= self.seq_len // 2:
            raise ValueError("max_statement_tokens must be below half of seq_len")
        if self.min_statement_tokens > self.max_statement_tokens:
            raise ValueError("min_statement_tokens must not exceed max_statement_tokens")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return self


# --------------------------------------------------------------------------------------------
# model (hrm/model)
# --------------------------------------------------------------------------------------------
class ModelConfig(_Section):
    hidden_size: int = Field(default=128, ge=8)
    """Width of every block."""

    num_heads: int = Field(default=4, ge=1)
    """Attention heads; must divide hidden_size."""

    expansion: float = Field(default=4.0, gt=0)
    """SwiGLU expansion factor."""

    H_layers: int = Field(default=2, ge=1)
    """Blocks in the high-level module."""

    L_layers: int = Field(default=2, ge=1)
    """Blocks in the low-level module."""

    H_cycles: int = Field(default=2, ge=1)
    """High-level updates per segment."""

    L_cycles: int = Field(default=2, ge=1)
    """Low-level updates per high-level update."""

    halt_max_steps: int = Field(default=4, ge=1)
    """Maximum ACT segments per example."""

    halt_exploration_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    """Probability of a random minimum halt step during training."""

    q_target: Literal["bootstrap", "halt_only"] = "bootstrap"
    """Q-learning target: paper-style bootstrapped q_continue, or TRM's q_halt only."""

    bootstrap_reuse: bool = True
    """Training with `bootstrap`: the extra no-grad segment that gives the q_continue target IS
    the row's next segment, so its no-grad prefix (every update but the differentiated last ones)
    is kept in the carry and the next optimizer step starts from it instead of recomputing it
    (one step staler weights for those no-grad updates; the target itself is unchanged). About
    a third less compute per step. False: recompute (the reference implementation)."""

    learned_positions: bool = False
    """Add a learned absolute position embedding to the token embedding (as the HRM reference's
    `pos_encodings: learned`), on top of RoPE. All target positions hold the same mask token, so
    with RoPE alone their states start identical and training sits on a unigram plateau for a
    long time; absolute positions break that symmetry at once (much faster memorisation)."""

    rope_theta: float = Field(default=10000.0, gt=0)
    """RoPE base."""

    rms_norm_eps: float = Field(default=1e-5, gt=0)
    """RMSNorm epsilon."""

    attention: Literal["auto", "flash", "sdpa", "math"] = "auto"
    """Attention kernel: flash-attn when installed and on CUDA (auto), SDPA, or plain math."""

    reverse_feedback: bool = True
    """Gated L-to-H feedback path ("reverse learning")."""

    reverse_gate: Literal["scalar", "channel"] = "scalar"
    """Feedback gate: one learned scalar, or one learned value per channel (sigmoid of a logit)."""

    reverse_gate_init: float = -2.0
    """Initial gate logit (sigmoid(-2) ~ 0.12: feedback starts small)."""

    architecture: Literal["hrm", "trm"] = "hrm"
    """`hrm`: separate H and L modules, one-step gradient. `trm`: one shared net, last recursion with gradient."""

    loss: Literal["softmax", "stablemax"] = "softmax"
    """LM loss: fp32 softmax cross-entropy, or stablemax."""

    copy_head: bool = False
    """A pointer over the row's own tokens beside the token head (pointer-generator / BugLab's
    rewrite by reference): at each position, a gated mixture of the token head's distribution
    and an attention over the row's positions that copies the token held there, so a fix can
    name a variable the function already uses (variable misuse, swapped arguments) without the
    token head having to learn that name."""

    mask_padding: bool = False
    """Attention (and the copy head) read no padding position: a row's outputs do not depend on
    how much padding follows it, which lets training trim each step's batch to its longest row
    (`HRMAct.trim_padding`; the cpu corpus is 41% padding at seq_len 320). flash-attn's dense
    kernel takes no mask: `attention: auto` then picks SDPA, `flash` is refused. False: every
    position takes part (models trained before this option; checkpoints keep their setting)."""

    head_positions: int = Field(default=64, ge=0)
    """Training only: the heads' loss is computed on this many positions per row, every edited
    one and a uniform sample of the kept ones, weighted so the loss estimates the loss over
    all positions (kept ones are nearly free to get right once the copy bias is learnt, and the
    first-token head's softmax over the vocabulary is most of a step's cost). 0: every
    labelled position. Must be at least `sequences.max_insertions`."""

    compile: bool = False
    """torch.compile the H and L modules in place (inductor fuses their elementwise work;
    checkpoints keep plain state-dict keys). Costs a compile per process (about 40 s on 2 CPU
    cores, cached on disk by inductor afterwards)."""

    @model_validator(mode="after")
    def _heads(self) -> ModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide hidden_size={self.hidden_size}")
        return self


# --------------------------------------------------------------------------------------------
# train (hrm/train)
# --------------------------------------------------------------------------------------------
class PhaseConfig(_Section):
    name: str
    """Phase name, also its artifact directory (`artifacts/train/<name>`)."""

    epochs: int = Field(ge=1)
    """Epochs in this phase."""

    lr: float = Field(gt=0)
    """Peak learning rate."""

    warmup_steps: int = Field(default=0, ge=0)
    """Linear warm-up steps before the cosine decay."""

    q_loss_weight: float = Field(default=0.5, ge=0)
    """Weight of the Q (halting) losses in the total loss."""

    halt_exploration_prob: float | None = Field(default=None, ge=0.0, le=1.0)
    """Overrides model.halt_exploration_prob for this phase."""

    L_cycles: int | None = Field(default=None, ge=1)
    """Overrides model.L_cycles for this phase."""

    data: Literal["corpus", "train"] = "train"
    """The sequences split the phase trains on: the mutation corpus, or the test-verified train
    instances."""

    curriculum: Literal["none", "easy_to_hard", "hardest"] = "none"
    """Example order: as sampled, easy to hard by edited positions, or only the hardest share."""

    hardest_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    """With `hardest`, the share of examples (most edited positions) kept."""

    bucket_rows: int = Field(default=0, ge=0)
    """With curriculum `none` and `model.mask_padding`: the epoch's random order is cut into
    chunks of this many rows and each chunk is ordered by row length (in steps of
    `hrm.model.act.WIDTH_MULTIPLE` tokens; random order within a step), so a batch holds rows of
    about one length and training trims it to them (`HRMAct.trim_padding`). Changes which rows
    share a batch, not which rows an epoch sees. On the cpu corpus (rows 187 of 320 tokens on
    average) chunks of 512 at batch 12 make the trimmed width 185 on average instead of 320
    (stored rows; renamed variants differ by a few tokens). 0: off."""

    augment: bool = True
    """Rename local identifiers consistently in every example, freshly every epoch
    (`hrm.augment`; deterministic per seed, epoch and row, so exact resume holds)."""


class TrainConfig(_Section):
    seed: int = 0
    """Seed of weights, sampling and exploration."""

    batch_size: int = Field(default=16, ge=1)
    """Global batch size (split across DDP ranks)."""

    optimizer: Literal["adamw", "adam_atan2"] = "adamw"
    """AdamW, or the pure-PyTorch Adam-atan2."""

    weight_decay: float = Field(default=0.2, ge=0)
    """Decoupled weight decay."""

    betas: tuple[float, float] = (0.9, 0.95)
    """Adam betas."""

    grad_clip: float = Field(default=1.0, gt=0)
    """Gradient-norm clipping."""

    min_lr_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    """The cosine decay ends at this share of the phase's peak learning rate."""

    ema_decay: float | None = Field(default=None, gt=0.0, lt=1.0)
    """EMA of weights (None: off)."""

    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Autocast dtype. `auto`: bf16 on CUDA and on CPUs with bf16 matrix units (oneDNN reports
    native bf16: AVX-512 BF16 / AMX), fp32 elsewhere (emulated bf16 is far slower than fp32).
    fp16 uses a grad scaler (on CUDA; on CPU it works but warns that it is no faster)."""

    augment_rate: float = Field(default=0.5, ge=0.0, le=1.0)
    """With a phase's `augment`: the chance that each renamable name of a row is renamed in an
    epoch's variant (one name at least)."""

    edit_weight: float = Field(default=1.0, gt=0)
    """Weight of an edited position's loss (its edit decision and its output tokens) against a
    kept position's: edits are a few percent of the positions."""

    pointer_weight: float = Field(default=0.0, ge=0)
    """Weight of the location (pointer) loss: per row, the cross-entropy of its edited positions
    under a softmax over its positions' change log-odds (BugLab's localisation objective), so
    training ranks the bug's position above the row's others, which is what the one-edit greedy
    fix and the search read. 0: off."""

    rank_weight: float = Field(default=0.0, ge=0)
    """Weight of the listwise rewrite loss (`hrm.model.losses.rank_loss`): per row, the fix's
    cross-entropy in a softmax over {the fix, `rank_negatives` wrong rewrites of the row} of
    their gains, the score the greedy fix and the search rank rewrites by. 0: off (no negatives
    are drawn). At 1 on the cpu recipe: val exact 11/50 against 12/50 without (BENCHMARKS.md
    "What did not lift the held-out exact rate")."""

    rank_negatives: int = Field(default=8, ge=1, le=64)
    """Wrong rewrites drawn per row and epoch for the listwise loss (`hrm.train.negatives`;
    under 10 ms per row with 8)."""

    reverse_control: bool = True
    """Also train the control model of the reverse-learning ablation (`hrm train-control`, the
    DVC stage `train_control`, a KFP task beside the training): the same phases, data, seed and
    epochs with the feedback path off, so that `reverse_learning_integration` is a paired
    comparison (the share of val rows where the model's loss is below the control's, with a sign
    test). Costs a second training (1 min 47 s of the committed cpu run on 2 cores). Off: the metric is null
    and its criterion reads "not measured"."""

    deterministic: bool = False
    """Deterministic algorithms (tests, exact resume)."""

    keep_checkpoints: int = Field(default=2, ge=1)
    """Checkpoints kept per phase."""

    checkpoint_every_steps: int = Field(default=0, ge=0)
    """Also checkpoint every N optimizer steps (0: at the end of each epoch only)."""

    device: str = "auto"
    """`auto` (cuda if available, else cpu), `cpu` or `cuda`."""

    num_threads: int | None = Field(default=None, ge=1)
    """torch intra-op threads on CPU (None: torch default)."""

    val_every_epochs: int = Field(default=1, ge=0)
    """Evaluate the sequences' `val` split every N global epochs and at the end of each phase
    (rank 0, the clean end-of-phase evaluation): history columns `val_lm_loss`,
    `val_token_accuracy`, `val_exact_accuracy`. 0: off (the columns stay empty)."""

    val_max_rows: int | None = Field(default=None, ge=1)
    """Rows of the val split evaluated per pass: the first N, the same every pass (None: all)."""

    train_eval_max_rows: int | None = Field(default=None, ge=1)
    """Rows of the phase's training data in the clean end-of-phase evaluation (`train_eval_*` in
    summary.json): N rows evenly spaced over the split, the same for a given split (None: all).
    A corpus phase holds thousands of rows; evaluating all of them cost 3 of the cpu profile's
    15 minutes."""

    phases: list[PhaseConfig] = Field(default_factory=list)
    """Training phases, run in order; each resumes from the previous one's checkpoint."""

    @model_validator(mode="after")
    def _phases(self) -> TrainConfig:
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")
        return self

    def phase_index(self, name: str) -> tuple[int, PhaseConfig]:
        """(index, config) of the phase called `name`; InputError naming the phases there are."""
        for i, phase in enumerate(self.phases):
            if phase.name == name:
                return i, phase
        from hrm.errors import InputError

        raise InputError(f"train.phases: no phase named {name!r} (have {[p.name for p in self.phases]})")


# --------------------------------------------------------------------------------------------
# eval (hrm/eval)
# --------------------------------------------------------------------------------------------
class SearchConfig(_Section):
    candidates_per_iteration: int = Field(default=4, ge=1)
    """K: candidates checked per search iteration (after the greedy fix)."""

    max_iterations: int = Field(default=3, ge=1)
    """I: search iterations per example (budget: 1 + I x K candidates)."""

    patience: int = Field(default=1, ge=1)
    """A row's search converged when its passing candidate would have stayed the best for this
    many further iterations within the budget: found at iteration i with i + patience <=
    max_iterations (candidates come best first and a pass cannot be bettered, so the search
    stops there instead of spending test runs to confirm it). Must be below max_iterations, so
    that a candidate found after the greedy fix can converge."""

    positions: int = Field(default=16, ge=1)
    """Most likely changed positions per row whose options are ranked (`hrm.eval.proposals`)."""

    alternatives: int = Field(default=3, ge=1)
    """Replacement tokens considered per position."""

    @property
    def budget(self) -> int:
        """Candidates a row's search checks at most: the greedy fix, then I x K."""
        return 1 + self.max_iterations * self.candidates_per_iteration

    @model_validator(mode="after")
    def _patience_below_iterations(self) -> SearchConfig:
        if self.patience >= self.max_iterations:
            raise ValueError(f"eval.search.patience ({self.patience}) must be below max_iterations "
                             f"({self.max_iterations}): otherwise only the greedy fix could converge")
        return self

    unigram_baseline: bool = True
    """Also search the unigram guess's candidates (its positions in order of how often their token
    changes in training, each to that token's most frequent output) with the same verifier and
    budget: the baseline of `resolved_after_search`, which is pass@k with test feedback. Costs
    about as many test runs as the model's search."""

    naturalness_baseline: bool = True
    """Also search the candidates of the n-gram model alone (`eval.naturalness`: the rewrites
    ranked by naturalness only) with the same verifier and budget: what the re-ranking's
    second model finds without the HRM."""

    untrained_baseline: bool = True
    """Also search the untrained model's candidates (with `eval.fix_space: rewrites`, the
    rewrites of the buggy code in random order) with the same verifier and budget: what the
    search gives without any learning, the strongest do-nothing baseline of
    `resolved_after_search` and of its curve `resolved_within` (the committed cpu run's val,
    measured over 13 candidates: within 4, 0.26 against the model's 0.60; within 13, 0.58
    against 0.72: the larger the budget, the more the candidate space finds on its own).
    `fix_in_search_candidates` is reported for it either way (no tests run)."""


class NaturalnessConfig(_Section):
    enabled: bool = True
    """Re-rank the HRM's rewrites by how natural the fixed code reads under an n-gram model of
    the training code (corpus and train split) and the row's own repository, and keep the buggy code where no rewrite
    reads better (`hrm.eval.fusion`; docs/metrics.md "Naturalness"), and report the
    `naturalness` baseline (the n-gram model alone ranking the same rewrites). Nothing to
    re-rank with `eval.fix_space: edits`: it is then off."""

    weight: float = Field(default=1.0, ge=0)
    """w in gain + w x naturalness: both are log-probability ratios, so 1 weighs them alike."""

    abstain: bool = True
    """Keep the buggy code where the best rewrite is not more probable than the buggy code under
    the n-gram model (the search still starts from that rewrite)."""

    order: int = Field(default=4, ge=1, le=8)
    """n of the n-gram model (tokens of context + 1)."""

    cache_weight: float = Field(default=0.3, ge=0, le=1)
    """Share of the repository cache in the interpolation (the rest: the training-code model).
    Rows without an environment use the training-code model alone."""

    cache_max_tokens: int = Field(default=400_000, ge=1)
    """Most tokens of the repository read into the cache: the row's own files first, then their
    directories', then the rest by path."""


class EvalConfig(_Section):
    splits: list[Literal["train", "val", "test"]] = Field(default_factory=lambda: ["val", "train"])
    """Splits evaluated by the pipeline."""

    batch_size: int = Field(default=32, ge=1)
    """Evaluation batch size."""

    workers: int = Field(default=2, ge=1)
    """Rows scored (their sandboxed test runs) in parallel."""

    halt_on_q: bool = False
    """Halt on the Q head (else every row runs halt_max_steps segments)."""

    max_edits: int | None = Field(default=1, ge=1)
    """With `fix_space: edits` (or a row without rewrites), positions the greedy fix may change:
    the best single edit, then other positions whose best option is a change, up to this many
    (null: no limit). With 1 the search also tries the
    single edits first (`hrm.eval.proposals`). 1 matches training's location loss (one bug
    location per row): on held-out mutations it was exact on 17 of 120 rows against 2 without a
    limit (BENCHMARKS.md)."""

    fix_space: Literal["rewrites", "edits"] = "rewrites"
    """What the greedy fix is chosen from. `rewrites`: every small rewrite of one expression of
    the buggy code (an operator, a comparison, `and`/`or`, a constant, an off-by-one, swapped
    operands or arguments, a local name, an attribute; `hrm.rewrites`), scored by the model,
    the best one; a row with none gets the best single edit. `edits`: the best single edit
    (`max_edits`). Rewrites also come first in the search. On the cpu recipe's val split:
    exact 12/50 against 8/50 (the untrained model 2/50) (BENCHMARKS.md "Rewrites")."""

    max_pass_to_pass: int = Field(default=10, ge=0)
    """Bounded sample of PASS_TO_PASS run per resolved check."""

    timeout_factor: float = Field(default=10.0, ge=0)
    """A prediction's test run is stopped after this many times the original repository's run
    of the same tests (measured once per instance), at least `timeout_min_s` and at most
    `envs.timeout_s`: a wrong rewrite that loops forever costs seconds, not the full minute
    (one untrained greedy fix of 50 val rows did). 0: always `envs.timeout_s`."""

    timeout_min_s: float = Field(default=10.0, gt=0)
    """The least time a prediction's test run gets (`timeout_factor`)."""

    run_tests: bool = True
    """Run the test tier where an environment exists."""

    allow_unconfined_execution: bool = False
    """Run model output even where the sandbox cannot confine the filesystem (its isolation
    label contains `unconfined`: no user namespaces and not root). Off: such rows are not run,
    reported as "not run: unconfined sandbox", and count as not resolved."""

    tier_weights: list[float] = Field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4])
    """Weights of the syntax, compile, AST-match and tests tiers in code_tiered_accuracy."""

    search: SearchConfig = Field(default_factory=SearchConfig)
    """SWE-search settings."""

    naturalness: NaturalnessConfig = Field(default_factory=NaturalnessConfig)
    """The n-gram re-ranking of the rewrites and the abstention (`hrm.eval.fusion`)."""

    @model_validator(mode="after")
    def _weights(self) -> EvalConfig:
        if len(self.tier_weights) != 4 or abs(sum(self.tier_weights) - 1.0) > 1e-6:
            raise ValueError("tier_weights must be 4 weights summing to 1")
        return self


# --------------------------------------------------------------------------------------------
# gate (hrm/gate)
# --------------------------------------------------------------------------------------------
class Criterion(_Section):
    metric: str
    """Metric name as written by `hrm evaluate` (validated against the known metrics)."""

    op: Literal["<", "<=", ">", ">="]
    """Comparison of the metric value against the threshold."""

    threshold: float
    """Target value."""

    split: Literal["train", "val", "test"] = "val"
    """Split whose metrics are read."""

    @model_validator(mode="after")
    def _known_metric(self) -> Criterion:
        _check_metric_name(self.metric, "metric")
        return self


def _check_metric_name(name: str, field: str) -> None:
    """Raise if `name` is not a metric `hrm evaluate` writes (imported lazily: keeps config light)."""
    from hrm.eval.metric_names import METRIC_NAMES

    if name not in METRIC_NAMES:
        raise ValueError(f"{field}: unknown metric '{name}' (known: {', '.join(METRIC_NAMES)})")


class GateConfig(_Section):
    criteria: list[Criterion] = Field(default_factory=list)
    """PROMOTE only if every criterion passes on a present, finite metric."""

    model_name: str = "hrm-swe"
    """Registered model name in the MLflow Model Registry."""

    alias: str = "champion"
    """Alias moved to a promoted version."""

    guard_metric: str | None = None
    """If set, do not promote a candidate worse than the current champion on this metric."""

    target_epoch: int = Field(default=50, ge=1)
    """Epoch the learning-curve projection extrapolates to."""

    plateau_min_epoch: int = Field(default=10, ge=1)
    """Plateau warnings only after this epoch."""

    plateau_window: int = Field(default=5, ge=2)
    """Window (epochs) over which loss reduction is measured for the plateau rule."""

    plateau_min_reduction: float = Field(default=0.10, ge=0.0, le=1.0)
    """Relative loss reduction over the window below which training has plateaued."""

    overfit_gap: float = Field(default=0.15, ge=0.0)
    """Train-minus-val token accuracy above which overfitting is flagged."""

    tiered_min: float = Field(default=0.1, ge=0.0, le=1.0)
    """Tiered accuracy below this at `tiered_check_share` of the plan is a warning."""

    tiered_check_share: float = Field(default=0.5, gt=0.0, le=1.0)
    """Share of the plan (target_epoch) after which the tiered-accuracy rule applies."""

    bootstrap_samples: int = Field(default=200, ge=10)
    """Bootstrap resamples for projection intervals."""

    search_min_convergence: float = Field(default=0.3, ge=0.0, le=1.0)
    """swe_search_convergence_rate (val) below this is the "search not converging" warning."""

    seed: int = 0
    """Seed of the projection bootstrap (the report is deterministic for a seed and inputs)."""

    primary_metric: Literal["auto", "resolved_rate", "exact_accuracy"] | None = "auto"
    """The repair metric a PROMOTE also needs, on `primary_split`: the lower bound of its
    bootstrap 95% interval (`<metric>_ci95` in metrics.json) above the copy baseline's value,
    and against every other baseline in metrics.json McNemar's exact test on the rows where the
    two differ, one-sided p <= 0.025 (`hrm.gate.primary`). `auto`: resolved_rate where the
    split's tests ran, else exact_accuracy. None: off, and then at least one passing criterion
    must be one the copy baseline fails (docs/gate.md)."""

    primary_split: Literal["train", "val", "test"] = "val"
    """Split of `primary_metric`."""

    @model_validator(mode="after")
    def _guard(self) -> GateConfig:
        # The guard compares against the champion in the direction and on the split of the
        # criterion on the same metric, so it must name a metric that has one.
        if self.guard_metric is not None:
            _check_metric_name(self.guard_metric, "guard_metric")
            if not any(c.metric == self.guard_metric for c in self.criteria):
                raise ValueError(
                    f"guard_metric: '{self.guard_metric}' needs a criterion on that metric "
                    "(its op gives the direction, its split the values compared)"
                )
        return self


# --------------------------------------------------------------------------------------------
# tracking (hrm/tracking.py)
# --------------------------------------------------------------------------------------------
class TrackingConfig(_Section):
    tracking_uri: str = "sqlite:///mlflow.db"
    """MLflow tracking and registry URI; the MLFLOW_TRACKING_URI variable overrides it."""

    artifact_location: str = "mlartifacts"
    """Artifact root for experiments created locally; on a sqlite backend a relative path is kept
    relative to the database's directory (`hrm-project:/<path>`), so the project can move."""

    experiment: str = "hrm-swe"
    """MLflow experiment name."""

    @property
    def resolved_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or self.tracking_uri


# --------------------------------------------------------------------------------------------
# root
# --------------------------------------------------------------------------------------------
class Params(_Section):
    profile: Literal["tiny", "cpu", "gpu"] = "cpu"
    """Active profile; its overrides from `profiles` were merged in at load."""

    artifacts_dir: str = "artifacts"
    """Root of all derived outputs (stage outputs; never inside data/)."""

    data: DataConfig = Field(default_factory=DataConfig)
    """Ingestion and validation."""

    envs: EnvsConfig = Field(default_factory=EnvsConfig)
    """Repository environments."""

    synth: SynthConfig = Field(default_factory=SynthConfig)
    """Offline instance generator."""

    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    """The mutation corpus of the foundation phase."""

    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    """Byte-level BPE tokenizer."""

    sequences: SequencesConfig = Field(default_factory=SequencesConfig)
    """Training sequences."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    """HRM architecture."""

    train: TrainConfig = Field(default_factory=TrainConfig)
    """Training."""

    eval: EvalConfig = Field(default_factory=EvalConfig)
    """Evaluation."""

    gate: GateConfig = Field(default_factory=GateConfig)
    """Convergence gate."""

    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """MLflow tracking."""

    @model_validator(mode="after")
    def _synth_envs_are_configured_repos(self) -> Params:
        # Checked here, not in SynthConfig: the set of repos lives in another section.
        for env in self.synth.envs:
            if env not in self.envs.repos:
                raise ValueError(
                    f"synth.envs: {env!r} is not a key of envs.repos "
                    f"(known: {sorted(self.envs.repos) or 'none'}); add an envs.repos entry for "
                    "it or list one that exists")
        for repo in self.sequences.held_out_repos:
            if repo not in self.envs.repos:
                raise ValueError(f"sequences.held_out_repos: {repo!r} is not a key of envs.repos")
        if self.model.head_positions and self.model.head_positions < self.sequences.max_insertions:
            raise ValueError(f"model.head_positions ({self.model.head_positions}) must be at least "
                             f"sequences.max_insertions ({self.sequences.max_insertions}): every "
                             "inserting position is among the positions the heads train on")
        for phase in self.train.phases:
            if phase.bucket_rows and (phase.curriculum != "none" or not self.model.mask_padding):
                raise ValueError(f"train.phases[{phase.name}].bucket_rows needs curriculum: none and "
                                 "model.mask_padding: true (it orders rows by length so that training "
                                 "can trim the padding, which only a masked model may)")
        corpus = {p.package.split("==")[0].lower() for p in self.corpus.packages}
        for repo_id, spec in self.envs.repos.items():
            if spec.package and spec.package.split("==")[0].lower() in corpus:
                raise ValueError(f"corpus.packages: {spec.package.split('==')[0]} is also the "
                                 f"environment {repo_id}: the corpus must not hold val/test code")
        return self


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return `base` with `override` merged in; mappings merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_raw(raw: dict[str, Any], profile: str | None = None) -> dict[str, Any]:
    """Apply the selected profile's overrides to a raw params mapping."""
    raw = dict(raw)
    profiles = raw.pop("profiles", {}) or {}
    name = profile or os.environ.get(PROFILE_ENV_VAR) or raw.get("profile", "cpu")
    if profiles and name not in profiles:
        raise ConfigError(f"profile: unknown profile '{name}' (known: {sorted(profiles)})")
    profile = dict(profiles.get(name, {}) or {})
    phase_overrides = profile.pop("phases", None)
    resolved = deep_merge(raw, profile)
    if phase_overrides:
        resolved = _merge_phases(resolved, phase_overrides, f"profiles.{name}.phases")
    resolved["profile"] = name
    return resolved


def _merge_phases(resolved: dict[str, Any], overrides: Any, where: str) -> dict[str, Any]:
    """Apply a profile's per-phase overrides (`phases: {<phase name>: {key: value}}`) to the
    phases of `train.phases` with that name. By name rather than by replacing the list, so DVC can
    track each phase's overrides on its own (`profiles.<profile>.phases.<name>`) and a change to
    one phase reruns that phase only."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: expected a mapping of phase name to overrides")
    phases = (resolved.get("train") or {}).get("phases") or []
    names = [p.get("name") for p in phases if isinstance(p, dict)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown phase(s) {unknown} (train.phases has {names})")
    for key, value in overrides.items():
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{where}.{key}: expected a mapping of overrides")
    train = dict(resolved["train"])
    train["phases"] = [deep_merge(p, overrides.get(p.get("name")) or {}) for p in phases]
    return {**resolved, "train": train}


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid params"]
    for e in err.errors():
        if not e["loc"]:  # a cross-field check of Params: its message names the keys
            lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
            continue
        key = ".".join(str(p) for p in e["loc"])
        lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any], profile: str | None = None, source: str = "params") -> Params:
    """Validate a raw mapping (profiles applied) into `Params`; errors name the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    resolved = resolve_raw(raw, profile)
    try:
        return Params.model_validate(resolved)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def params_mapping(text: str, source: str) -> Any:
    """YAML or JSON text as a plain value; ConfigError naming `source` when it does not parse."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid JSON/YAML: {err}") from None


def read_params_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """params.yaml as a plain mapping (profiles not applied); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    raw = params_mapping(path.read_text(encoding="utf-8"), str(path))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return raw


def load_params(path: str | os.PathLike[str] = DEFAULT_PARAMS_PATH, profile: str | None = None) -> Params:
    """Load and validate `params.yaml`; `profile` (or $HRM_PROFILE) overrides its `profile` key.
    The one entry point for a params FILE (the CLI, the compiler); `run_params` is the one for
    params TEXT with a run's overrides (the KFP tasks)."""
    return parse_params(read_params_file(path), profile, source=str(Path(path)))


def _positive(value: float, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: must be a number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}: must be a positive number, got {value!r}")
    return value


def run_params(text: str, profile: str | None, *, epochs_scale: float = 1.0,
               lr_scale: float = 1.0, criteria_json: str = "", source: str = "params",
               ) -> dict[str, Any]:
    """The params mapping one run executes with: `text` (params.yaml's content, profiles
    included, as JSON or YAML) with `profile` applied, then the run's overrides: every phase's
    `epochs` times `epochs_scale` (rounded, at least 1), its `lr` times `lr_scale`, and a
    non-empty `criteria_json` (a JSON list of `{metric, op, threshold, split}`) replacing
    `gate.criteria`. Validated by the same models as params.yaml (ConfigError naming the key);
    returned as a plain mapping without `profiles` (the profile is applied)."""
    raw = params_mapping(text, source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    parse_params(raw, profile or None, source=source)  # the params themselves are valid
    resolved = resolve_raw(raw, profile or None)
    epochs_scale = _positive(epochs_scale, "epochs_scale")
    lr_scale = _positive(lr_scale, "lr_scale")
    train = resolved.setdefault("train", {})
    phases = [dict(phase) for phase in train.get("phases") or []]
    for phase in phases:
        if epochs_scale != 1.0:
            phase["epochs"] = max(1, round(phase["epochs"] * epochs_scale))
        if lr_scale != 1.0:
            phase["lr"] = phase["lr"] * lr_scale
    train["phases"] = phases
    if criteria_json.strip():
        criteria = params_mapping(criteria_json, "criteria_json")
        if not isinstance(criteria, list):
            raise ConfigError("criteria_json: must be a JSON list of "
                              "{metric, op, threshold, split} objects")
        resolved.setdefault("gate", {})["criteria"] = criteria
    parse_params(resolved, resolved["profile"],
                 source=f"{source} with epochs_scale/lr_scale/criteria_json")
    return resolved
