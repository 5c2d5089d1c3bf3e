"""The pretraining data loader: host-local batches of MLM + NSP/SOP examples, by step.

Global example g = step * global_batch_size + row belongs to epoch g // E and position
g % E of that epoch (E = chunks in the training split). The chunk at that position comes from a
per-epoch permutation, and its pairing and masking from a random stream keyed by
(seed, epoch, position); so `batch_at(step)` is a pure function and the loader's only state
is the step. Host h of P builds rows [h * B / P, (h + 1) * B / P) of each global batch.

A held-out split (documents spread evenly over the corpus, never trained on) gives a fixed eval
set: its examples are drawn once from their own stream and are the same at every step.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from squeezemobile_jax.data.corpus import CorpusSpec
from squeezemobile_jax.data.prefetch import (
    PrefetchIterator,
    ProcessPrefetchIterator,
    prefetch_steps,
)
from squeezemobile_jax.data.pretraining_examples import (
    STREAM_EVAL,
    STREAM_TRAIN,
    Chunks,
    ExampleOptions,
    SpecialIds,
    choose_pair,
    empty_batch,
    epoch_order,
    example_rng,
    held_out_documents,
    plan_chunks,
    write_example,
)
from squeezemobile_jax.data.token_cache import TokenizedCorpus, tokenized_corpus
from squeezemobile_jax.data.tokenizer import WordPieceTokenizer, load_tokenizer

logger = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]
BATCH_KEYS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "masked_lm_weights",
    "next_sentence_labels",
)


def default_process_layout() -> tuple[int, int]:
    """(process_index, process_count) of this JAX process (imports jax only here)."""
    import jax

    return jax.process_index(), jax.process_count()


class PretrainingLoader:
    """MLM + NSP/SOP batches for one host (see the module docstring).

    Args:
      corpus: a CorpusSpec, a mapping of its fields, "builtin", a text file path, or an
        already tokenised `TokenizedCorpus`.
      tokenizer: a WordPieceTokenizer or a path for `load_tokenizer`; with a TokenizedCorpus
        it may also be just the SpecialIds (ids of [CLS], [SEP], [MASK], [PAD], vocab size).
      max_seq_length, max_predictions_per_seq, masked_lm_prob, short_seq_prob, task,
        whole_word_masking: example options (BERT defaults; task 'nsp' or 'sop').
      seed: seeds order, pairing and masking.
      global_batch_size: examples per step over all hosts; divisible by process_count.
      process_index, process_count: this host's slice; default from jax.
      start_step: first step of `iter(loader)`.
      eval_documents: documents held out for the eval split (0 = no eval split).
      eval_batch_size: global eval batch size (default: global_batch_size).
      cache_dir: where tokenised corpora are cached (default `default_cache_dir()`).
      num_proc: worker processes for tokenising a corpus not yet cached.
      prefetch: batches computed ahead of the training step.
      num_workers: processes that make training batches (0: one background thread). A
        process makes about 5,000-8,000 examples/s, so a host's batch of 8192 needs several to keep
        ahead of an accelerator step; the loader is pickled into each (a cached corpus by
        its file names).

    Batches (host-local NumPy, b = global_batch_size / process_count, T = max_seq_length,
    P = max_predictions_per_seq): input_ids, attention_mask, token_type_ids [b, T] int32;
    masked_lm_positions, masked_lm_ids [b, P] int32; masked_lm_weights [b, P] float32;
    next_sentence_labels [b] int32 (NSP: 1 = random B; SOP: 1 = swapped).
    """

    def __init__(
        self,
        corpus: CorpusSpec | Mapping[str, Any] | str | os.PathLike | TokenizedCorpus,
        tokenizer: WordPieceTokenizer | str | os.PathLike | SpecialIds,
        *,
        max_seq_length: int = 128,
        max_predictions_per_seq: int = 20,
        masked_lm_prob: float = 0.15,
        short_seq_prob: float = 0.1,
        task: str = "nsp",
        whole_word_masking: bool = False,
        seed: int = 12345,
        global_batch_size: int = 256,
        process_index: int | None = None,
        process_count: int | None = None,
        start_step: int = 0,
        eval_documents: int = 0,
        eval_batch_size: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        num_proc: int = 1,
        prefetch: int = 2,
        num_workers: int = 0,
        show_progress: bool = True,
    ):
        if isinstance(tokenizer, SpecialIds):
            if not isinstance(corpus, TokenizedCorpus):
                raise ValueError("SpecialIds instead of a tokenizer needs a TokenizedCorpus")
        elif not isinstance(tokenizer, WordPieceTokenizer):
            tokenizer = load_tokenizer(tokenizer)
        self.tokenizer = tokenizer if isinstance(tokenizer, WordPieceTokenizer) else None
        self.options = ExampleOptions(
            max_seq_length=max_seq_length,
            max_predictions_per_seq=max_predictions_per_seq,
            masked_lm_prob=masked_lm_prob,
            short_seq_prob=short_seq_prob,
            task=task,  # type: ignore[arg-type]
            whole_word_masking=whole_word_masking,
        )
        if process_index is None or process_count is None:
            default_index, default_count = default_process_layout()
            process_index = default_index if process_index is None else process_index
            process_count = default_count if process_count is None else process_count
        eval_batch_size = global_batch_size if eval_batch_size is None else eval_batch_size
        _check_layout(global_batch_size, eval_batch_size, process_index, process_count)
        self.seed = int(seed)
        self.global_batch_size = global_batch_size
        self.eval_batch_size = eval_batch_size
        self.process_index, self.process_count = process_index, process_count
        self.start_step = start_step
        self.prefetch = prefetch
        if num_workers < 0:
            raise ValueError(f"num_workers={num_workers} must be >= 0")
        self.num_workers = num_workers

        if isinstance(corpus, TokenizedCorpus):
            self.corpus = corpus
        else:
            assert isinstance(tokenizer, WordPieceTokenizer)
            self.corpus = tokenized_corpus(corpus, tokenizer, cache_dir, num_proc, show_progress)
        if isinstance(tokenizer, SpecialIds):
            self.special = tokenizer
        else:
            self._check_vocabulary(tokenizer)
            self.special = SpecialIds(
                cls_id=tokenizer.cls_id,
                sep_id=tokenizer.sep_id,
                mask_id=tokenizer.mask_id,
                pad_id=tokenizer.pad_id,
                vocab_size=tokenizer.vocab_size,
                unk_id=tokenizer.unk_id,
                continuation=tokenizer.continuation_mask() if whole_word_masking else None,
            )
        if whole_word_masking and self.special.continuation is None:
            raise ValueError("whole_word_masking needs SpecialIds.continuation (bool [vocab])")
        if self.corpus.num_documents == 0:
            raise ValueError("the corpus has no document")
        self._attach_runtime_state()
        eval_docs = held_out_documents(self.corpus.num_documents, eval_documents)
        train_docs = np.setdiff1d(np.arange(self.corpus.num_documents), eval_docs)
        max_tokens = self.options.max_num_tokens
        self.train_chunks: Chunks = plan_chunks(self._so, self._do, train_docs, max_tokens)
        self.eval_chunks: Chunks = plan_chunks(self._so, self._do, eval_docs, max_tokens)
        self._log_summary()

    # Derived from the corpus or per process, so rebuilt rather than pickled.
    _RUNTIME_STATE = ("_tokens", "_so", "_do", "_orders", "_orders_lock", "_per_thread")

    def _attach_runtime_state(self) -> None:
        """Aliases of the corpus arrays, the epoch-order cache and its lock, and the
        per-thread random generators (`_RUNTIME_STATE`)."""
        self._tokens = self.corpus.tokens
        self._so = self.corpus.sentence_offsets
        self._do = self.corpus.document_offsets
        self._orders: dict[int, np.ndarray] = {}
        self._orders_lock = threading.Lock()
        self._per_thread = threading.local()

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any] | Any,
        tokenizer: WordPieceTokenizer | SpecialIds | None = None,
        **overrides: Any,
    ) -> PretrainingLoader:
        """Builds a loader from a config of the __init__ arguments (a mapping or an
        ml_collections ConfigDict, e.g. `config.data`); keyword overrides win (typically
        process_index, process_count, start_step). `tokenizer` defaults to config["tokenizer"]
        (a path). `corpus` may itself be a nested config of CorpusSpec fields."""
        kwargs = dict(config.items())
        kwargs.update(overrides)
        if tokenizer is not None:
            kwargs["tokenizer"] = tokenizer
        if "corpus" not in kwargs or "tokenizer" not in kwargs:
            raise ValueError("a pretraining data config needs 'corpus' and 'tokenizer'")
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(
                f"unknown pretraining data option(s) {unknown}; known: {sorted(known)}"
            )
        return cls(kwargs.pop("corpus"), kwargs.pop("tokenizer"), **kwargs)

    # -- sizes ---------------------------------------------------------------------------------

    @property
    def local_batch_size(self) -> int:
        return self.global_batch_size // self.process_count

    @property
    def examples_per_epoch(self) -> int:
        return len(self.train_chunks)

    @property
    def steps_per_epoch(self) -> float:
        return self.examples_per_epoch / self.global_batch_size

    @property
    def num_eval_examples(self) -> int:
        return len(self.eval_chunks)

    @property
    def num_eval_batches(self) -> int:
        """Full eval batches; the remainder (< eval_batch_size examples) is left out, and a
        split smaller than one batch is repeated to fill it."""
        if not len(self.eval_chunks):
            return 0
        return max(1, len(self.eval_chunks) // self.eval_batch_size)

    # -- batches -------------------------------------------------------------------------------

    def _local_rows(self, step: int, batch_size: int) -> np.ndarray:
        b = batch_size // self.process_count
        return step * batch_size + self.process_index * b + np.arange(b, dtype=np.int64)

    def _generator(self) -> np.random.Generator:
        """This thread's Generator, re-keyed per example (the prefetch thread and the main
        thread's eval batches each have their own)."""
        generator = getattr(self._per_thread, "generator", None)
        if generator is None:
            generator = self._per_thread.generator = np.random.Generator(np.random.Philox())
        return generator

    def _order(self, epoch: int) -> np.ndarray:
        with self._orders_lock:
            order = self._orders.get(epoch)
            if order is None:
                order = epoch_order(self.seed, epoch, len(self.train_chunks))
                self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
                self._orders[epoch] = order
            return order

    def example_at(self, epoch: int, index: int) -> Batch:
        """Training example `index` of `epoch` as a batch of one (a pure function)."""
        out = empty_batch(1, self.options)
        self._write_train(epoch, index, out, 0)
        return out

    def _write_train(self, epoch: int, index: int, out: Batch, row: int) -> None:
        rng = example_rng(self.seed, epoch, index, STREAM_TRAIN, reuse=self._generator())
        chunk = int(self._order(epoch)[index])
        pair = choose_pair(rng, self._so, self._do, self.train_chunks, chunk, self.options)
        write_example(rng, self._tokens, pair, self.options, self.special, out, row)

    def batch_at(self, step: int) -> Batch:
        """This host's slice of global batch `step` (pure: same step, same arrays)."""
        if not len(self.train_chunks):
            raise ValueError("the training split is empty (all documents held out?)")
        rows = self._local_rows(step, self.global_batch_size)
        epochs, indices = np.divmod(rows, len(self.train_chunks))
        out = empty_batch(len(rows), self.options)
        for r, (epoch, index) in enumerate(zip(epochs.tolist(), indices.tolist())):
            self._write_train(epoch, index, out, r)
        return out

    def iterator(
        self, start_step: int | None = None, prefetch: int | None = None
    ) -> PrefetchIterator[Batch] | ProcessPrefetchIterator[Batch]:
        """Batches for steps start_step, start_step + 1, ... computed ahead, in a background
        thread or in `num_workers` processes. `.step` is the next step; `.close()` stops it."""
        start = self.start_step if start_step is None else start_step
        depth = self.prefetch if prefetch is None else prefetch
        return prefetch_steps(self.batch_at, start, depth, self.num_workers)

    def __getstate__(self) -> dict[str, Any]:
        """Pickles for worker processes: the corpus arrays once (by file name when cached)."""
        return {k: v for k, v in self.__dict__.items() if k not in self._RUNTIME_STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._attach_runtime_state()

    def __iter__(self) -> Iterator[Batch]:
        return self.iterator()

    def eval_batch_at(self, i: int) -> Batch:
        """This host's slice of eval batch i (0 <= i < num_eval_batches); fixed across steps."""
        n = len(self.eval_chunks)
        if not 0 <= i < self.num_eval_batches:
            raise IndexError(f"eval batch {i} out of range [0, {self.num_eval_batches})")
        examples = self._local_rows(i, self.eval_batch_size) % n
        out = empty_batch(len(examples), self.options)
        for r, index in enumerate(examples.tolist()):
            rng = example_rng(self.seed, 0, index, STREAM_EVAL, reuse=self._generator())
            pair = choose_pair(rng, self._so, self._do, self.eval_chunks, index, self.options)
            write_example(rng, self._tokens, pair, self.options, self.special, out, r)
        return out

    def eval_batches(self) -> Iterator[Batch]:
        """All eval batches in order (this host's slices)."""
        for i in range(self.num_eval_batches):
            yield self.eval_batch_at(i)

    # -- checks and logs -----------------------------------------------------------------------

    def _check_vocabulary(self, tokenizer: WordPieceTokenizer) -> None:
        cached_with = self.corpus.info.get("tokenizer_fingerprint")
        if cached_with is not None:
            if cached_with != tokenizer.fingerprint():
                raise ValueError(
                    f"the corpus was tokenised with another tokenizer ({cached_with}) than "
                    f"{tokenizer.source} ({tokenizer.fingerprint()})"
                )
        elif self.corpus.num_tokens and int(np.max(self.corpus.tokens)) >= tokenizer.vocab_size:
            raise ValueError(
                f"the corpus holds token ids beyond the vocabulary of {tokenizer.source} "
                f"({tokenizer.vocab_size} ids)"
            )

    def _log_summary(self) -> None:
        lengths = np.diff(self._so)
        too_long = int(np.count_nonzero(lengths > self.options.max_num_tokens))
        info = self.corpus.info
        logger.info(
            "pretraining data %s: %d documents, %d sentences, %d tokens; %d training examples "
            "per epoch (%.1f steps of %d), %d eval examples from %d held-out documents; "
            "host %d/%d builds %d rows per step",
            info.get("corpus", "<in memory>"),
            self.corpus.num_documents,
            self.corpus.num_sentences,
            self.corpus.num_tokens,
            self.examples_per_epoch,
            self.steps_per_epoch,
            self.global_batch_size,
            self.num_eval_examples,
            len(self.eval_chunks.documents),
            self.process_index,
            self.process_count,
            self.local_batch_size,
        )
        skipped = info.get("skipped_empty_documents", 0), info.get("skipped_empty_sentences", 0)
        if any(skipped):
            logger.warning(
                "the corpus cache dropped %d empty document(s) and %d line(s) with no token",
                *skipped,
            )
        if too_long:
            logger.warning(
                "%d sentence(s) are longer than max_seq_length - 3 = %d tokens and will be "
                "truncated in every example that uses them",
                too_long,
                self.options.max_num_tokens,
            )
        if len(self.train_chunks.documents) < 2:
            logger.warning(
                "the training split has a single document: a 'random' segment B comes from the "
                "same document"
            )
        if len(self.eval_chunks) and len(self.eval_chunks) < self.eval_batch_size:
            logger.warning(
                "eval split has %d examples, fewer than eval_batch_size=%d: examples repeat to "
                "fill one batch",
                len(self.eval_chunks),
                self.eval_batch_size,
            )
        elif len(self.eval_chunks) % max(1, self.eval_batch_size):
            logger.info(
                "eval uses %d of %d held-out examples (full batches only)",
                self.num_eval_batches * self.eval_batch_size,
                len(self.eval_chunks),
            )


def _check_layout(global_batch: int, eval_batch: int, index: int, count: int) -> None:
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"process_index={index} must be in [0, process_count={count})")
    for name, size in (("global_batch_size", global_batch), ("eval_batch_size", eval_batch)):
        if size < 1 or size % count:
            raise ValueError(f"{name}={size} must be a positive multiple of process_count={count}")
