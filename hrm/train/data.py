"""Training data for one phase: arrays, curriculum order, and a resumable row feeder.

The feeder is a stream of example indices per epoch, sharded across DDP ranks with
`DistributedSampler` semantics (the epoch's order, padded to a multiple of the world size,
strided by rank). Halted carry rows take the next indices of the stream; when a rank's stream is
exhausted before the others', its halted rows become padding (`valid=False`) so every rank takes
the same number of optimizer steps. Its position is two integers (epoch, position), saved in
checkpoints for exact resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from hrm.config import PhaseConfig
from hrm.errors import InputError
from hrm.model.act import WIDTH_MULTIPLE
from hrm.model.hrm import PAD_ID
from hrm.model.losses import IGNORE_INDEX

Augment = Callable[[int, int], "tuple[np.ndarray, np.ndarray, np.ndarray] | None"]
"""(row index, epoch) -> a fresh variant of the row (inputs, labels, inserts), or None to use the
row as stored. Must be deterministic in its arguments (exact resume relies on it)."""

Negatives = Callable[[int, int, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(row index, epoch, inputs, labels, inserts) of the row as fed -> its wrong rewrites
[R, P, 2] (`hrm.train.negatives`). Deterministic in its arguments."""


@dataclass
class TrainArrays:
    """Token ids [N, L] (int32), first-token labels [N, L] and inserts [N, E, K] of one split
    (`hrm.sequences`)."""

    inputs: np.ndarray
    labels: np.ndarray
    inserts: np.ndarray
    vocab_size: int
    augment: Augment | None = None
    negatives: Negatives | None = None

    def __post_init__(self) -> None:
        if self.inputs.ndim != 2 or self.inputs.shape != self.labels.shape:
            raise InputError(f"inputs {self.inputs.shape} and labels {self.labels.shape} must be equal [N, L] arrays")
        if self.inserts.ndim != 3 or self.inserts.shape[0] != self.inputs.shape[0]:
            raise InputError(f"inserts {self.inserts.shape} must be [N, E, K] for {self.inputs.shape[0]} rows")
        if len(self.inputs) == 0:
            raise InputError("the training split is empty")
        if int(self.inputs.min()) < 0 or int(self.inputs.max()) >= self.vocab_size:
            raise InputError(f"input ids outside [0, {self.vocab_size})")
        real = self.labels[self.labels != IGNORE_INDEX]
        if real.size and (int(real.min()) < 0 or int(real.max()) >= self.vocab_size):
            raise InputError(f"label ids outside [0, {self.vocab_size}) (and not {IGNORE_INDEX})")
        outs = self.inserts[:, :, 1:]
        outs = outs[outs != IGNORE_INDEX]
        if outs.size and (int(outs.min()) < 0 or int(outs.max()) >= self.vocab_size):
            raise InputError(f"output ids outside [0, {self.vocab_size}) (and not {IGNORE_INDEX})")

    @property
    def seq_len(self) -> int:
        return int(self.inputs.shape[1])

    @property
    def slots(self) -> int:
        return int(self.inserts.shape[2])

    @property
    def max_insertions(self) -> int:
        return int(self.inserts.shape[1])

    def row_lengths(self) -> np.ndarray:
        """Per row: its tokens before the padding (rows are padded at the end)."""
        return (self.inputs != PAD_ID).sum(axis=1)

    @property
    def mean_labelled(self) -> float:
        """Labelled positions per row, on average."""
        return float((self.labels != IGNORE_INDEX).sum(axis=1).mean())

    def difficulty(self) -> np.ndarray:
        """Per row: edited positions, those whose first output token is not their own plus
        those inserting (the curriculum's measure of how hard a fix is)."""
        labelled = self.labels != IGNORE_INDEX
        return ((self.labels != self.inputs) & labelled).sum(axis=1) + (self.inserts[:, :, 0] >= 0).sum(axis=1)

    def row(self, index: int, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row `index` as fed in `epoch`: the augmented variant when there is one."""
        if self.augment is not None:
            got = self.augment(index, epoch)
            if got is not None:
                return got
        return self.inputs[index], self.labels[index], self.inserts[index]


def load_train_arrays(sequences_dir: str | Path, split: str = "train") -> TrainArrays:
    """Read a split written by `hrm sequences build` (through hrm.sequences.load_split)."""
    from hrm.sequences import load_split

    data = load_split(Path(sequences_dir), split)
    if data.meta.ignore_index != IGNORE_INDEX:
        raise InputError(f"ignore_index is {data.meta.ignore_index}, training expects {IGNORE_INDEX}",
                         path=str(Path(sequences_dir) / "meta.json"))
    return TrainArrays(np.asarray(data.inputs, dtype=np.int32), np.asarray(data.labels, dtype=np.int64),
                       np.asarray(data.inserts, dtype=np.int64), int(data.meta.vocab_size))


def load_val_arrays(sequences_dir: str | Path) -> TrainArrays | None:
    """The `val` split for the per-epoch val pass, or None when the sequences have no val rows
    (no `val.npz`, or an empty one)."""
    path = Path(sequences_dir) / "val.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        if "inputs" in data and len(data["inputs"]) == 0:
            return None
    return load_train_arrays(sequences_dir, "val")


def epoch_order(n: int, seed: int, epoch: int, phase: PhaseConfig, target_lengths: np.ndarray,
                row_lengths: np.ndarray | None = None) -> np.ndarray:
    """The order of example indices for one epoch, deterministic in (seed, epoch).

    none: a random permutation (with `phase.bucket_rows` and `row_lengths`, the rows' token
    counts: each chunk of that many rows ordered by length, `length_buckets`); easy_to_hard:
    sorted by difficulty (edited positions, random tie order); hardest: the `hardest_fraction`
    hardest rows, shuffled.
    """
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    if phase.curriculum == "none":
        if phase.bucket_rows:
            if row_lengths is None:
                raise ValueError(f"phase {phase.name} buckets rows by length (bucket_rows): pass row_lengths")
            return length_buckets(perm, row_lengths, phase.bucket_rows)
        return perm
    by_length = perm[np.argsort(target_lengths[perm], kind="stable")]
    if phase.curriculum == "easy_to_hard":
        return by_length
    keep = max(1, int(round(phase.hardest_fraction * n)))
    hardest = by_length[-keep:]
    return hardest[rng.permutation(len(hardest))]


def length_buckets(order: np.ndarray, row_lengths: np.ndarray, chunk: int) -> np.ndarray:
    """`order` cut into chunks of `chunk` rows, each stably sorted by its rows' length in steps of
    `WIDTH_MULTIPLE` tokens (the trimmed widths): the same rows, in batches of about one width."""
    steps = -(-np.asarray(row_lengths) // WIDTH_MULTIPLE)
    return np.concatenate([part[np.argsort(steps[part], kind="stable")]
                           for part in np.split(order, range(chunk, len(order), chunk))])


class RowFeeder:
    """This rank's resumable stream of example indices, epoch by epoch."""

    def __init__(self, arrays: TrainArrays, phase: PhaseConfig, seed: int, rank: int, world: int):
        self.arrays = arrays
        self.phase = phase
        self.seed = seed
        self.rank = rank
        self.world = world
        self.epoch = 0
        self.position = 0
        self._lengths = arrays.difficulty()
        self._row_lengths = arrays.row_lengths()
        self._stream: list[int] = []
        self._build()

    def _build(self) -> None:
        order = epoch_order(len(self.arrays.inputs), self.seed, self.epoch, self.phase, self._lengths,
                            self._row_lengths)
        # DistributedSampler over the epoch's order (no extra shuffle): pads by repeating the
        # head of the order and strides by rank, exactly as torch shards datasets.
        sampler = DistributedSampler(order, num_replicas=self.world, rank=self.rank, shuffle=False)
        self._stream = [int(order[i]) for i in sampler]

    @property
    def epoch_size(self) -> int:
        """Examples this rank feeds per epoch."""
        return len(self._stream)

    @property
    def exhausted(self) -> bool:
        return self.position >= len(self._stream)

    def take(self, count: int) -> list[int]:
        """Up to `count` next indices of the current epoch (fewer when exhausted)."""
        got = self._stream[self.position : self.position + count]
        self.position += len(got)
        return got

    def next_epoch(self) -> None:
        self.epoch += 1
        self.position = 0
        self._build()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._build()


def fill_halted_rows(carry, feeder: RowFeeder, arrays: TrainArrays, exploration_prob: float,
                     halt_max_steps: int, generator: torch.Generator) -> int:
    """Load new examples into the halted rows of `carry` (in place); returns how many were loaded.

    Rows for which the stream has no example left become padding (valid=False, halted=True).
    Exploration: each loaded row gets, with probability `exploration_prob`, a minimum halt step
    drawn uniformly from [2, halt_max_steps]. Random draws come from `generator` for every halted
    row in a fixed order, so the sequence is reproducible and checkpointable.
    """
    halted = carry.halted.nonzero().flatten().tolist()
    if not halted:
        return 0
    explore = torch.rand(len(halted), generator=generator) < exploration_prob
    hi = max(halt_max_steps, 2)
    draws = torch.randint(2, hi + 1, (len(halted),), generator=generator)
    epoch = feeder.epoch
    indices = feeder.take(len(halted))
    device = carry.inputs.device
    for slot, row in enumerate(halted):
        if slot < len(indices):
            idx = indices[slot]
            inputs, labels, inserts = arrays.row(idx, epoch)
            carry.inputs[row] = torch.from_numpy(np.asarray(inputs)).to(device=device, dtype=carry.inputs.dtype)
            carry.labels[row] = torch.from_numpy(np.asarray(labels)).to(device=device, dtype=carry.labels.dtype)
            carry.inserts[row] = torch.from_numpy(np.asarray(inserts)).to(device=device, dtype=carry.inserts.dtype)
            if carry.negatives is not None and arrays.negatives is not None:
                carry.negatives[row] = torch.from_numpy(arrays.negatives(idx, epoch, inputs, labels, inserts))
            carry.valid[row] = True
            carry.fresh[row] = True
            carry.halted[row] = False
            carry.min_steps[row] = int(draws[slot]) if (bool(explore[slot]) and halt_max_steps > 1) else 0
        else:
            carry.valid[row] = False
            carry.fresh[row] = True
            carry.halted[row] = True
            carry.labels[row] = IGNORE_INDEX
            carry.inserts[row, :, 0] = -1
            carry.min_steps[row] = 0
            if carry.negatives is not None:
                carry.negatives[row] = -1
    return len(indices)
