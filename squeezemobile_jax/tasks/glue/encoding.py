"""Tokenised, padded arrays of every split a run needs (train, dev, test, diagnostic)."""

from __future__ import annotations

import dataclasses
import logging

import ml_collections
import numpy as np

from squeezemobile_jax.data import WordPieceTokenizer
from squeezemobile_jax.tasks.glue.examples import GlueExamples
from squeezemobile_jax.tasks.glue.sources import data_source, find_in_glue_dir, load_split
from squeezemobile_jax.tasks.glue.specs import GlueTask, SplitSpec

log = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what the model takes


def encode_examples(
    examples: GlueExamples, tokenizer: WordPieceTokenizer, max_seq_length: int
) -> tuple[dict[str, np.ndarray], int]:
    """Tokenises and pads every example to `max_seq_length`.

    Returns ({input_ids, attention_mask, token_type_ids: int32 [N, L], labels: [N] when
    labeled, example_id: int32 [N] (position in `examples`)}, number of truncated examples).
    Pairs are truncated longest-first, as BERT and HF do.
    """
    n, length = len(examples), max_seq_length
    pairs = examples.texts[1] if len(examples.texts) > 1 else None
    # One extra token tells which examples did not fit; only those are encoded again.
    encoded = tokenizer.encode_batch(examples.texts[0], pairs, max_length=length + 1)
    long_rows = [i for i, e in enumerate(encoded) if len(e["input_ids"]) > length]
    if long_rows:
        again = tokenizer.encode_batch(
            [examples.texts[0][i] for i in long_rows],
            None if pairs is None else [pairs[i] for i in long_rows],
            max_length=length,
        )
        for i, e in zip(long_rows, again):
            encoded[i] = e
    arrays = {
        k: np.zeros((n, length), np.int32)
        for k in ("input_ids", "attention_mask", "token_type_ids")
    }
    for i, e in enumerate(encoded):
        for key, arr in arrays.items():
            arr[i, : len(e[key])] = e[key]
    if tokenizer.pad_id:
        arrays["input_ids"][arrays["attention_mask"] == 0] = tokenizer.pad_id
    if examples.labels is not None:
        arrays["labels"] = examples.labels.copy()
    arrays["example_id"] = np.arange(n, dtype=np.int32)
    if long_rows:
        log.info(
            "%s: truncated %d of %d example(s) to %d tokens",
            examples.source,
            len(long_rows),
            n,
            length,
        )
    return arrays, len(long_rows)


@dataclasses.dataclass
class EncodedSplit:
    """One split: its spec, its rows and their encoded arrays (`encode_examples`)."""

    split: SplitSpec
    examples: GlueExamples
    arrays: dict[str, np.ndarray]

    @property
    def name(self) -> str:
        return self.split.name


def _encode(
    examples: GlueExamples, tokenizer: WordPieceTokenizer, length: int, stats: dict
) -> dict[str, np.ndarray]:
    arrays, truncated = encode_examples(examples, tokenizer, length)
    stats["examples"][examples.split.key] = len(examples)
    stats["skipped_rows"][examples.split.key] = examples.skipped
    stats["truncated"][examples.split.key] = truncated
    if "labels" in arrays:
        labels = arrays["labels"]
        arrays["labels"] = labels.astype(np.float32 if labels.dtype.kind == "f" else np.int32)
    return arrays


def load_task_data(
    config: ml_collections.ConfigDict, task: GlueTask, tokenizer: WordPieceTokenizer
) -> tuple[EncodedSplit, list[EncodedSplit], list[EncodedSplit], EncodedSplit | None, dict]:
    """(train set, dev sets, test sets, labeled diagnostic or None, counts: examples /
    skipped rows / truncated per split)."""
    source = data_source(config)
    length = int(config.data.max_seq_length)
    stats: dict[str, dict[str, int]] = {"examples": {}, "skipped_rows": {}, "truncated": {}}
    examples = load_split(source, task, task.train)
    train = EncodedSplit(task.train, examples, _encode(examples, tokenizer, length, stats))
    dev, test = [], []
    for split in task.dev:
        examples = load_split(source, task, split)
        dev.append(EncodedSplit(split, examples, _encode(examples, tokenizer, length, stats)))
    for split in task.test:
        examples = load_split(source, task, split, required=False)
        if examples is not None:
            test.append(EncodedSplit(split, examples, _encode(examples, tokenizer, length, stats)))
    diagnostic = None
    split = task.diagnostic
    if split is not None and (
        source.files.get(split.key)
        or (source.glue_dir and find_in_glue_dir(source.glue_dir, split))
    ):
        examples = load_split(source, task, split)
        diagnostic = EncodedSplit(split, examples, _encode(examples, tokenizer, length, stats))
    return train, dev, test, diagnostic, stats
