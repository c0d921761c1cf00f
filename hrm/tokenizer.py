"""Byte-level BPE tokenizer trained on the TRAIN split only, lossless by construction.

Lossless because: the ByteLevel pre-tokenizer maps every byte to a visible symbol (so nothing is
unknown), `add_prefix_space=False` adds nothing, there is no normalizer, and the ByteLevel decoder
maps symbols back to bytes. Special-token strings that occur in data (a problem statement might
literally contain `<|pad|>`) are encoded as plain text, never as the special id
(`encode_special_tokens`), so `decode(encode(x)) == x` for every string.

Special tokens have fixed ids 0..7 in the order of `SPECIAL_TOKENS`; downstream code reads them
from `HrmTokenizer` attributes or `meta.json`, never by guessing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hrm.config import Params, TokenizerConfig
from hrm.data.instance import Instance, read_instances
from hrm.errors import InputError
from hrm.hunks import parse_patch
from hrm.json_input import read_json_strict
from hrm.splits import check_coverage, load_splits

PAD, BOS, EOS, SEP, HUNK, MASK, UNK, SWAP = (
    "<|pad|>",
    "<|bos|>",
    "<|eos|>",
    "<|sep|>",
    "<|hunk|>",
    "<|mask|>",
    "<|unk|>",
    "<|swap|>",
)
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, SEP, HUNK, MASK, UNK, SWAP)
"""Ids 0..7 in this order: pad, bos, eos, sep (statement/code), hunk separator, mask, unk, swap
(the label of a swap's pivot token, `hrm.swaps`)."""
SPECIAL_NAMES: tuple[str, ...] = tuple(t.removeprefix("<|").removesuffix("|>") for t in SPECIAL_TOKENS)
"""The special tokens' short names, in id order (`HrmTokenizer.<name>_id`)."""

HUNK_SEPARATOR = HUNK
"""Text of the hunk separator as it appears in joined `buggy_code` / `fixed_code` strings."""

TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"


def file_header(path: str) -> str:
    """The short line that introduces each hunk's code in the prompt (and in training text)."""
    return f"# file: {path}\n"


@dataclass
class HrmTokenizer:
    """A loaded tokenizer: `encode`/`decode` plus the special ids as attributes."""

    tokenizer: object
    """The underlying `tokenizers.Tokenizer`."""
    meta: dict
    fingerprint: str
    """The tokenizer's identity: sha256 of its `tokenizer.json` (vocab, merges, specials). The one
    fingerprint sequences meta and checkpoints record and evaluation compares
    (`tokenizer_fingerprint`)."""
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    sep_id: int = 3
    hunk_id: int = 4
    mask_id: int = 5
    unk_id: int = 6
    swap_id: int = 7

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> dict[str, int]:
        return {name: getattr(self, f"{name}_id") for name in SPECIAL_NAMES}

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; no special token is added or recognised."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_with_starts(self, text: str) -> tuple[list[int], list[int]]:
        """`encode(text)` and the character offset in `text` at which each token starts."""
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        return enc.ids, [start for start, _ in enc.offsets]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; special ids render as their token strings (e.g. `<|hunk|>`)."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def _new_tokenizer(cfg: TokenizerConfig):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def training_texts(instances: list[Instance], splits: dict[str, str],
                   corpus: list | None = None) -> Iterator[str]:
    """Texts of TRAIN instances only (problem statements, file headers and both code regions of
    each hunk), then of the corpus rows (statement, header, buggy and fixed function)."""
    for row in corpus or ():
        yield row.problem_statement
        yield file_header(row.file)
        yield row.buggy
        yield row.fixed
    for inst, hunks in _train_hunks(instances, splits):
        yield inst.problem_statement
        for hunk in hunks:
            yield file_header(hunk.file)
            yield hunk.buggy_text
            yield hunk.fixed_text


def training_code(instances: list[Instance], splits: dict[str, str], corpus: list | None = None
                  ) -> Iterator[str]:
    """The clean code among the training texts: the corpus rows' fixed functions, then the fixed
    side of each TRAIN instance's hunks (`hrm.naturalness`'s base model; never val or test)."""
    for row in corpus or ():
        yield row.fixed
    for _inst, hunks in _train_hunks(instances, splits):
        yield from (hunk.fixed_text for hunk in hunks)


def _train_hunks(instances: list[Instance], splits: dict[str, str]) -> Iterator[tuple[Instance, list]]:
    """Each TRAIN instance with its patch's hunks (val and test never reach the tokenizer)."""
    for inst in instances:
        if splits[inst.instance_id] == "train":
            yield inst, parse_patch(inst.patch, source=inst.instance_id)


def _fingerprint(texts: list[str]) -> str:
    """sha256 over length-prefixed texts (so boundaries count, not just the concatenation)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def tokenizer_fingerprint(directory: str | Path) -> str:
    """The tokenizer fingerprint of a tokenizer directory: sha256 of its `tokenizer.json`.

    Captures vocabulary, merges and special tokens (what the token ids mean); not the training
    text, which meta.json records separately as `training_text_sha256`.
    """
    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise InputError("tokenizer file not found (run `hrm tokenizer build`)", path=str(path))
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_tokenizer(instances_path: str | Path, splits_path: str | Path, out_dir: str | Path,
                    cfg: TokenizerConfig, corpus_path: str | Path | None = None, *,
                    tracking: Params | None = None) -> dict:
    """Step: train the BPE on the train split (and the corpus, when given); write
    `tokenizer.json` and `meta.json`.

    Deterministic: same instances, splits and config give a byte-identical `tokenizer.json`.
    Returns the meta written.
    """
    started = time.time()
    from tokenizers import pre_tokenizers, trainers

    instances_path, splits_path = Path(instances_path), Path(splits_path)
    if not instances_path.is_file():
        raise InputError("instances file not found", path=str(instances_path))
    instances = read_instances(instances_path)
    splits = load_splits(splits_path)
    check_coverage(instances, splits, splits_path)
    corpus = None
    if corpus_path is not None:
        from hrm.corpus.rows import read_rows

        corpus = read_rows(corpus_path)
    texts = list(training_texts(instances, splits, corpus))
    if not texts:
        raise InputError("the train split is empty: nothing to train the tokenizer on",
                         path=str(splits_path))

    tok = _new_tokenizer(cfg)
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tok.encode_special_tokens = True
    for expected, token in enumerate(SPECIAL_TOKENS):
        got = tok.token_to_id(token)
        if got != expected:  # the layout every downstream step relies on
            raise RuntimeError(f"special token {token} got id {got}, expected {expected}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / TOKENIZER_FILE), pretty=True)
    meta = {
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "requested_vocab_size": cfg.vocab_size,
        "special_tokens": {tok_str: i for i, tok_str in enumerate(SPECIAL_TOKENS)},
        "special_ids": {name: i for i, name in enumerate(SPECIAL_NAMES)},
        "tokenizer_sha256": tokenizer_fingerprint(out_dir),
        "training_text_sha256": _fingerprint(texts),
        "training_texts": len(texts),
        "training_chars": sum(len(t) for t in texts),
        "train_instances": sum(1 for s in splits.values() if s == "train"),
        "corpus_rows": len(corpus or ()),
        "config": cfg.model_dump(mode="json"),
    }
    # here, not at the top: the steps that only read a tokenizer do not depend on this module
    from hrm.naturalness import write_training_code

    meta["training_code_texts"] = write_training_code(out_dir, training_code(instances, splits, corpus))
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    if tracking is not None:
        from hrm.step_tracking import log_tokenizer

        log_tokenizer(tracking, meta, started)
    return meta


def load_tokenizer(directory: str | Path) -> HrmTokenizer:
    """Load `tokenizer.json` + `meta.json` from `directory`; errors name the missing file."""
    from tokenizers import Tokenizer

    directory = Path(directory)
    tok_path, meta_path = directory / TOKENIZER_FILE, directory / META_FILE
    for path in (tok_path, meta_path):
        if not path.is_file():
            raise InputError("tokenizer file not found (run `hrm tokenizer build`)",
                             path=str(path))
    try:
        tok = Tokenizer.from_file(str(tok_path))
    except Exception as err:  # the Rust side raises a bare Exception on a bad file
        raise InputError(f"cannot load tokenizer: {err}", path=str(tok_path)) from None
    meta = read_json_strict(meta_path)
    # The flag is not guaranteed to survive a save/load round trip; set it explicitly so text
    # that spells a special token stays plain text.
    tok.encode_special_tokens = True
    for expected, token in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(token) != expected:
            raise InputError(f"special token {token} does not have id {expected}",
                             path=str(tok_path))
    fingerprint = tokenizer_fingerprint(directory)
    recorded = meta.get("tokenizer_sha256")
    if recorded is not None and recorded != fingerprint:
        raise InputError(f"tokenizer.json (sha256 {fingerprint}) is not the file this meta.json was "
                         f"written with (tokenizer_sha256 {recorded}): rebuild the tokenizer",
                         path=str(tok_path))
    return HrmTokenizer(tokenizer=tok, meta=meta, fingerprint=fingerprint)
