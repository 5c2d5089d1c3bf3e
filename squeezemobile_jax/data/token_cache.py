"""Tokenising a corpus once and caching it on disk as memory-mapped NumPy arrays.

A tokenised corpus is three flat arrays (no Python objects per sentence):

- `tokens` [num_tokens]: WordPiece ids of every sentence, concatenated (uint16 when the
  vocabulary fits, else int32);
- `sentence_offsets` [num_sentences + 1] int64: sentence s is `tokens[so[s]:so[s + 1]]`;
- `document_offsets` [num_documents + 1] int64: document d is sentences `do[d]:do[d + 1]`.

The cache directory is keyed by the corpus fingerprint and the tokenizer fingerprint, written
atomically (safe when several hosts build it at once) and reused by later runs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from squeezemobile_jax.data.corpus import CorpusError, CorpusSource, CorpusSpec, describe
from squeezemobile_jax.data.progress import Progress
from squeezemobile_jax.data.tokenizer import WordPieceTokenizer

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
_ARRAYS = ("tokens", "sentence_offsets", "document_offsets")
_META_FILE = "meta.json"


@dataclasses.dataclass(frozen=True)
class TokenizedCorpus:
    """A tokenised corpus as flat arrays (see the module docstring for the layout).

    `cache_directory` is set when the arrays are memory-mapped from a cache; a pickled copy
    (e.g. for a worker process) then maps the same files instead of carrying the data.
    """

    tokens: np.ndarray
    sentence_offsets: np.ndarray
    document_offsets: np.ndarray
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    cache_directory: str | None = dataclasses.field(default=None, compare=False)

    def __reduce_ex__(self, protocol):
        if self.cache_directory is not None:
            return load_tokenized_corpus, (self.cache_directory,)
        return super().__reduce_ex__(protocol)

    @property
    def num_documents(self) -> int:
        return len(self.document_offsets) - 1

    @property
    def num_sentences(self) -> int:
        return len(self.sentence_offsets) - 1

    @property
    def num_tokens(self) -> int:
        return int(self.sentence_offsets[-1])

    def sentence(self, s: int) -> np.ndarray:
        return self.tokens[self.sentence_offsets[s] : self.sentence_offsets[s + 1]]

    def document(self, d: int) -> list[np.ndarray]:
        """The sentences of document d, as id arrays."""
        lo, hi = self.document_offsets[d], self.document_offsets[d + 1]
        return [self.sentence(s) for s in range(lo, hi)]

    @classmethod
    def from_documents(
        cls, documents: Sequence[Sequence[Sequence[int]]], info: dict[str, Any] | None = None
    ) -> TokenizedCorpus:
        """Builds a corpus in memory from id lists (documents -> sentences -> ids).

        Empty sentences and documents are not allowed here (the cache builder drops and counts
        them); this constructor is for tests and small programmatic corpora.
        """
        lengths = [len(s) for doc in documents for s in doc]
        if any(n == 0 for n in lengths) or any(len(doc) == 0 for doc in documents):
            raise ValueError("from_documents: empty sentence or document")
        tokens = np.fromiter(
            itertools.chain.from_iterable(s for doc in documents for s in doc),
            dtype=np.int32,
            count=sum(lengths),
        )
        so = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        do = np.concatenate([[0], np.cumsum([len(d) for d in documents], dtype=np.int64)])
        return cls(tokens, so, do, dict(info or {}))


def cache_key(corpus_fingerprint: str, tokenizer_fingerprint: str) -> str:
    """Name of the cache entry for a corpus tokenised by a tokenizer."""
    payload = f"v{CACHE_FORMAT_VERSION}|{corpus_fingerprint}|{tokenizer_fingerprint}"
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    """`$SQUEEZEMOBILE_CACHE`, else `$XDG_CACHE_HOME/squeezemobile_jax`, else ~/.cache/..."""
    if os.environ.get("SQUEEZEMOBILE_CACHE"):
        return Path(os.environ["SQUEEZEMOBILE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "squeezemobile_jax"


def tokenized_corpus(
    corpus: CorpusSpec | Any,
    tokenizer: WordPieceTokenizer,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int = 1,
    show_progress: bool = True,
) -> TokenizedCorpus:
    """Returns the corpus tokenised by `tokenizer`, from the cache or tokenising it now.

    `num_proc` > 1 tokenises blocks of lines in that many worker processes. Empty documents and
    sentences with no tokens are dropped, counted and logged.
    """
    spec = CorpusSpec.from_config(corpus)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    source = CorpusSource(spec, cache_dir)
    directory = cache_dir / f"tokens-{cache_key(source.fingerprint, tokenizer.fingerprint())}"
    if (directory / _META_FILE).is_file():
        logger.info("using the tokenised corpus cached at %s", directory)
        return load_tokenized_corpus(directory)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{directory.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        info = _write_corpus(source, tokenizer, tmp, num_proc, show_progress)
        try:
            os.rename(tmp, directory)
        except OSError:  # another process finished first; its copy is identical
            if not (directory / _META_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _log_build(info, directory)
    return load_tokenized_corpus(directory)


def load_tokenized_corpus(directory: str | os.PathLike) -> TokenizedCorpus:
    """Opens a cache directory written by `tokenized_corpus` (arrays memory-mapped)."""
    directory = Path(directory)
    info = json.loads((directory / _META_FILE).read_text())
    arrays = {}
    for name in _ARRAYS:
        spec = info["arrays"][name]
        arrays[name] = np.memmap(
            directory / f"{name}.bin", dtype=spec["dtype"], mode="r", shape=(spec["length"],)
        )
    return TokenizedCorpus(info=info, cache_directory=str(directory), **arrays)


# ---------------------------------------------------------------------------------------------
# Building


_BLOCK_LINES = 4096
_worker_backend = None


def _init_worker(tokenizer_json: str) -> None:
    global _worker_backend
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process = one core
    from tokenizers import Tokenizer

    _worker_backend = Tokenizer.from_str(tokenizer_json)
    _worker_backend.encode_special_tokens = True


def _encode_in_worker(lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    assert _worker_backend is not None
    encodings = _worker_backend.encode_batch(lines, add_special_tokens=False)
    return _flatten([e.ids for e in encodings])


def _flatten(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


def _blocks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(lines)
    while block := list(itertools.islice(it, size)):
        yield block


def _encoded_blocks(
    tokenizer: WordPieceTokenizer, blocks: Iterator[list[str]], num_proc: int
) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """(lines, flat ids, per-line lengths) per block, in input order."""
    if num_proc <= 1:
        for block in blocks:
            yield (block, *_flatten(tokenizer.text_to_ids(block)))
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    with concurrent.futures.ProcessPoolExecutor(
        num_proc, mp_context=ctx, initializer=_init_worker, initargs=(tokenizer.backend.to_str(),)
    ) as pool:
        pending: deque = deque()
        for block in blocks:
            pending.append((block, pool.submit(_encode_in_worker, block)))
            if len(pending) >= 2 * num_proc:  # bounded: never reads far ahead of the writer
                done_block, future = pending.popleft()
                yield (done_block, *future.result())
        while pending:
            done_block, future = pending.popleft()
            yield (done_block, *future.result())


class _Writer:
    """Appends tokenised blocks to the three array files, tracking document boundaries."""

    def __init__(self, directory: Path, token_dtype: np.dtype):
        self.token_dtype = token_dtype
        self.files = {n: open(directory / f"{n}.bin", "wb") for n in _ARRAYS}  # noqa: SIM115
        self.num_tokens = self.num_sentences = self.num_documents = 0
        self.doc_sentences = 0  # kept sentences of the open document
        self.doc_lines = 0  # non-empty lines of the open document
        self.empty_sentences = 0  # lines that produced no token
        self.empty_documents = 0  # documents whose lines all produced no token
        self.files["sentence_offsets"].write(np.zeros(1, np.int64).tobytes())
        self.files["document_offsets"].write(np.zeros(1, np.int64).tobytes())

    def add_block(self, lines: list[str], ids: np.ndarray, lengths: np.ndarray) -> None:
        boundary = np.fromiter((not line for line in lines), dtype=bool, count=len(lines))
        keep = ~boundary & (lengths > 0)
        self.empty_sentences += int(np.count_nonzero(~boundary & (lengths == 0)))
        self.files["tokens"].write(ids.astype(self.token_dtype, copy=False).tobytes())
        kept = lengths[keep]
        offsets = self.num_tokens + np.cumsum(kept, dtype=np.int64)
        self.files["sentence_offsets"].write(offsets.tobytes())
        # Close documents at boundary lines.
        kept_before = np.cumsum(keep) - keep  # kept sentences before each line in the block
        lines_before = np.cumsum(~boundary) - ~boundary
        doc_ends, prev_kept, prev_lines = [], 0, 0
        for b in np.flatnonzero(boundary):
            sentences = self.doc_sentences + int(kept_before[b]) - prev_kept
            nonempty = self.doc_lines + int(lines_before[b]) - prev_lines
            prev_kept, prev_lines = int(kept_before[b]), int(lines_before[b])
            self.doc_sentences = self.doc_lines = 0
            if sentences:
                doc_ends.append(self.num_sentences + prev_kept)
            elif nonempty:
                self.empty_documents += 1
        self.doc_sentences += int(keep.sum()) - prev_kept
        self.doc_lines += int((~boundary).sum()) - prev_lines
        self.num_tokens += int(kept.sum())
        self.num_sentences += int(keep.sum())
        self.num_documents += len(doc_ends)
        self.files["document_offsets"].write(np.asarray(doc_ends, np.int64).tobytes())

    def close(self) -> None:
        self.add_block([""], np.zeros(0, np.int32), np.zeros(1, np.int64))  # close last document
        for f in self.files.values():
            f.close()


def _write_corpus(
    source: CorpusSource,
    tokenizer: WordPieceTokenizer,
    directory: Path,
    num_proc: int,
    show_progress: bool,
) -> dict[str, Any]:
    token_dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 2**16 else np.int32)
    writer = _Writer(directory, token_dtype)
    stats = source.stats
    name = describe(source.spec)
    with Progress(
        f"tokenising {name}", total=stats.units_total, unit=stats.unit, enabled=show_progress
    ) as progress:
        done = 0
        for lines, ids, lengths in _encoded_blocks(
            tokenizer, _blocks(source.lines(), _BLOCK_LINES), num_proc
        ):
            writer.add_block(lines, ids, lengths)
            progress.update(stats.units_done - done)
            done = stats.units_done
    writer.close()
    if writer.num_documents == 0:
        raise CorpusError(
            f"{', '.join(stats.files)}: the corpus is empty: {stats.lines} line(s) read, no "
            "document with any token. Pretraining text needs one sentence per line and a "
            "blank line between documents."
        )
    info = {
        "format_version": CACHE_FORMAT_VERSION,
        "corpus": describe(source.spec),
        "corpus_fingerprint": source.fingerprint,
        "tokenizer_fingerprint": tokenizer.fingerprint(),
        "vocab_size": tokenizer.vocab_size,
        "files": stats.files,
        "lines_read": stats.lines,
        "lines_with_replaced_bytes": stats.lines_with_replaced_bytes,
        "documents": writer.num_documents,
        "sentences": writer.num_sentences,
        "tokens": writer.num_tokens,
        "skipped_empty_sentences": writer.empty_sentences,
        "skipped_empty_documents": writer.empty_documents,
        "arrays": {
            "tokens": {"dtype": token_dtype.name, "length": writer.num_tokens},
            "sentence_offsets": {"dtype": "int64", "length": writer.num_sentences + 1},
            "document_offsets": {"dtype": "int64", "length": writer.num_documents + 1},
        },
    }
    (directory / _META_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def _log_build(info: dict[str, Any], directory: Path) -> None:
    logger.info(
        "tokenised %s: %d documents, %d sentences, %d tokens -> %s",
        info["corpus"],
        info["documents"],
        info["sentences"],
        info["tokens"],
        directory,
    )
    if info["skipped_empty_sentences"] or info["skipped_empty_documents"]:
        logger.warning(
            "%s: skipped %d line(s) that produced no token and %d document(s) left empty",
            info["corpus"],
            info["skipped_empty_sentences"],
            info["skipped_empty_documents"],
        )
    if info["lines_with_replaced_bytes"]:
        logger.warning(
            "%s: %d line(s) had bytes that are not UTF-8, replaced by U+FFFD",
            info["corpus"],
            info["lines_with_replaced_bytes"],
        )
