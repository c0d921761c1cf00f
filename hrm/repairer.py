"""A trained model ready to propose fixes: checkpoint + tokenizer + the sequence budget it was
trained with, and `propose`, which turns (problem statement, buggy regions) into fixed code.

This is the one path from a model to a fix outside evaluation. `hrm predict` (SWE-bench
predictions), `hrm repair` (one function of a user's file) and the MLflow pyfunc model
(`hrm.pyfunc`) all call it, so they propose exactly what `hrm evaluate` scores as the greedy fix:
the same row layout (`hrm.sequences.encode_example`), the same inference and the same decoding
(`hrm.eval.proposals`: the best-scored rewrite, re-ranked by the naturalness n-gram model with
the code around the input as its cache, `hrm.eval.fusion`; the code unchanged where no rewrite
reads more naturally than it).

What the model sees is blind to the fix: each region's "fixed" side is set to its buggy text
before encoding, so nothing about the answer (not even whether the change would fall inside a
window) reaches the row. A region longer than the budget is cut to its first lines, the rule
training used; the proposal says so (`code_truncated`) and only the shown lines can change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrm.config import Params
from hrm.errors import InputError
from hrm.regions import Region
from hrm.sequences import SequenceHunk


@dataclass(frozen=True)
class Proposal:
    """The model's fix for one input."""

    hunks: list[SequenceHunk]
    """The regions shown to the model (windowed when cut), buggy side; `fixed_text` equals
    `buggy_text` here (the fix is unknown)."""
    texts: list[str]
    """The proposed code of each region, in the order of `hunks`."""
    change_probability: float
    """The model's largest per-position probability of a change: how sure it is that it saw
    something to fix (ranks functions in `hrm repair` when none is named)."""
    q_halt: float
    """sigmoid of the Q head's halting logit: the model's own estimate that its output is right."""
    code_truncated: bool
    statement_truncated: bool
    special_tokens: list[str]
    """Special tokens inside the proposed code: then it is not code and `texts` must not be used."""
    alternatives: list[list[str]] = dataclasses.field(default_factory=list)
    """The next most likely changed outputs (`RowProposal.candidates`), decoded, best first;
    those holding special tokens are left out. Empty unless asked for."""
    abstained: bool = False
    """With `eval.naturalness`: no rewrite reads more naturally than the code as given, so
    `texts` are the code unchanged (`hrm.eval.fusion`); `alternatives` still hold the best
    rewrites."""

    @property
    def changed(self) -> bool:
        return [h.buggy_text for h in self.hunks] != list(self.texts)

    @property
    def is_code(self) -> bool:
        return not self.special_tokens


@dataclass
class Repairer:
    """A loaded model and what it needs to read code and write fixes."""

    model: object
    tokenizer: object
    params: Params
    checkpoint: str
    """The checkpoint file the weights came from."""
    checkpoint_sha256: str
    naturalness: object | None = None
    """The base n-gram model (`hrm.naturalness.base_model`) when `eval.naturalness` re-ranks
    the rewrites, as `hrm evaluate` does; None: the HRM alone."""

    @classmethod
    def load(cls, checkpoint: str | Path, tokenizer_dir: str | Path, params: Params) -> Repairer:
        """Load a checkpoint (file, or directory: its newest, which must verify) and the tokenizer
        it was trained with. Refuses a tokenizer or sequence budget other than the checkpoint's."""
        from hrm.model.inference import unwrap
        from hrm.tokenizer import load_tokenizer
        from hrm.train.checkpoint import load_for_inference, resolve_checkpoint, sha256_file
        from hrm.train.device import resolve_device

        tokenizer_dir = Path(tokenizer_dir)
        if not (tokenizer_dir / "tokenizer.json").is_file():
            raise InputError("tokenizer not found (expected tokenizer.json)", path=str(tokenizer_dir))
        if not Path(checkpoint).exists():
            raise InputError("checkpoint not found", path=str(checkpoint))
        file = resolve_checkpoint(checkpoint)
        tok = load_tokenizer(tokenizer_dir)
        model, info = load_for_inference(file, resolve_device(params.train.device))
        if info.tokenizer_fingerprint != tok.fingerprint:
            raise InputError(f"checkpoint was trained with another tokenizer (it records "
                             f"{info.tokenizer_fingerprint}, {tokenizer_dir} has {tok.fingerprint})",
                             path=info.path)
        if info.seq_len != params.sequences.seq_len:
            raise InputError(f"checkpoint reads rows of {info.seq_len} tokens, params "
                             f"sequences.seq_len is {params.sequences.seq_len}: pass the params "
                             "(and profile) it was trained with", path=info.path)
        net = unwrap(model)
        if (net.slots, net.max_insertions) != (params.sequences.slots,
                                               params.sequences.max_insertions):
            raise InputError(f"checkpoint has slots={net.slots}, max_insertions="
                             f"{net.max_insertions}; params sequences have "
                             f"{params.sequences.slots}, {params.sequences.max_insertions}",
                             path=info.path)
        from hrm.eval.fusion import reranks

        base = None
        if reranks(params.eval):
            from hrm.naturalness import base_model

            base = base_model(tokenizer_dir, params.eval.naturalness.order)
        return cls(model, tok, params, info.path, sha256_file(Path(info.path)), base)

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> Repairer:
        """Load a registered model's files (`hrm.pyfunc` layout: `artifacts/checkpoint/`,
        `artifacts/tokenizer/`, `artifacts/params.yaml`)."""
        from hrm.config import load_params
        from hrm.model_dir import artifact_paths

        paths = artifact_paths(model_dir)
        return cls.load(paths["checkpoint"], paths["tokenizer"], load_params(paths["params"]))

    def propose(self, items: Sequence[tuple[str, Sequence[Region]]], *, batch_size: int | None = None,
                alternatives: int = 0, caches: Sequence[list[list[str]] | None] | None = None
                ) -> list[Proposal | str]:
        """One proposal per (problem statement, regions) item, or the reason it has none (the
        regions do not fit the row at all); with `alternatives`, up to that many next-best
        outputs each. `caches`: per item, the token sequences of the code around it (its
        repository or file without the regions, `hrm.eval.fusion.repository_sources` /
        `file_cache`) for the naturalness re-ranking; None: the base n-gram model alone."""
        from hrm.eval.decoding import decode_prediction
        from hrm.eval.proposals import propose
        from hrm.eval.rewrite_outputs import rewrite_outputs
        from hrm.sequences import IGNORE_INDEX, encode_example, pack

        cfg = self.params.sequences
        encoded: list = []
        out: list[Proposal | str] = []
        for statement, regions in items:
            if not regions:
                raise ValueError("an item needs at least one region")
            blind = [dataclasses.replace(r, fixed_text=r.buggy_text, ops=()) for r in regions]
            enc = encode_example(self.tokenizer, statement, blind, cfg)
            if isinstance(enc, str):
                out.append(f"does not fit the model's rows ({cfg.seq_len} tokens): {enc}")
            else:
                out.append("")
                encoded.append(enc)
        if not encoded:
            return out
        inputs, labels, _ = pack(encoded, cfg, self.tokenizer.pad_id)
        ecfg = self.params.eval
        rewrites = ([rewrite_outputs(self.tokenizer, inputs[k], e.segments, cfg.slots)
                     for k, e in enumerate(encoded)] if ecfg.fix_space == "rewrites" else None)
        proposals = propose(self.model, inputs, labels, [[a for a, _ in e.segments] for e in encoded],
                            end_id=self.tokenizer.eos_id, delete_id=self.tokenizer.mask_id,
                            ignore_index=IGNORE_INDEX, positions=ecfg.search.positions,
                            alternatives=ecfg.search.alternatives,
                            batch_size=batch_size or ecfg.batch_size, halt_on_q=ecfg.halt_on_q,
                            rewrites=rewrites)
        k = 0
        for i, slot in enumerate(out):
            if slot:
                continue
            enc, prop = encoded[k], proposals[k]
            if self.naturalness is not None:
                prop = self._fuse(prop, inputs[k], enc.segments, caches[i] if caches else None)
            greedy = prop.prediction(ecfg.max_edits)
            decoded = decode_prediction(self.tokenizer, inputs[k], enc.segments, greedy)
            others = []
            for outputs, _ in prop.candidates(alternatives + 1, ecfg.max_edits) if alternatives else []:
                alt = decode_prediction(self.tokenizer, inputs[k], enc.segments, outputs)
                if outputs != greedy and not alt.special_tokens and len(others) < alternatives:
                    others.append(list(alt))
            out[i] = Proposal(
                hunks=list(enc.hunks), texts=list(decoded),
                change_probability=max(prop.change_prob.values(), default=0.0),
                q_halt=float(1.0 / (1.0 + np.exp(-prop.q_halt))),
                code_truncated=enc.code_truncated, statement_truncated=enc.statement_truncated,
                special_tokens=list(decoded.special_tokens), alternatives=others,
                abstained=prop.abstain)
            k += 1
        return out

    def _fuse(self, prop, inputs, segments, cache: list[list[str]] | None):
        """`prop` re-ranked by the n-gram model of the base and `cache` (`hrm.eval.fusion`)."""
        from hrm.eval.decoding import decode_prediction
        from hrm.eval.fusion import cached_model, fuse, naturalness_scorer

        ncfg = self.params.eval.naturalness
        natural = naturalness_scorer(lambda outs: decode_prediction(self.tokenizer, inputs, segments, outs),
                                     cached_model(self.naturalness, cache, ncfg.cache_weight))
        return fuse(prop, natural, weight=ncfg.weight, abstain=ncfg.abstain)


def load_registered(model_uri: str, params: Params, dst: str | Path) -> Repairer:
    """Download a registered model (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, or any MLflow
    artifact URI of an `hrm.pyfunc` model) from the registry `params.tracking` names into `dst`
    and load it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from hrm.tracking import configure

    configure(params.tracking)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst))
    except MlflowException as err:
        raise InputError(f"cannot load {model_uri} from {params.tracking.resolved_uri}: "
                         f"{err.message.splitlines()[0]} ({_registered_hint(model_uri)})") from None
    return Repairer.from_model_dir(local)


def _registered_hint(model_uri: str) -> str:
    """What to pass instead when a registry URI does not resolve: the registered model's versions
    with their gate verdicts (a FLAGged version is registered but never gets the alias)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not model_uri.startswith("models:/"):
        return "not a registered model: pass models:/NAME/VERSION, or --checkpoint"
    name = model_uri.removeprefix("models:/").split("@")[0].split("/")[0]
    try:
        versions = MlflowClient().search_model_versions(f"name='{name}'")
    except MlflowException:
        versions = []
    if not versions:
        return f"no version of {name!r} is registered: run `make run` or `hrm gate`, or pass --checkpoint"
    versions = sorted(versions, key=lambda v: int(v.version))[-5:]
    listed = ", ".join(f"{v.version} ({v.tags.get('gate', 'no gate verdict')})" for v in versions)
    return (f"registered versions of {name!r}: {listed}; the alias only moves on a PROMOTE, "
            f"so pass e.g. --model models:/{name}/{versions[-1].version}, or --checkpoint")
