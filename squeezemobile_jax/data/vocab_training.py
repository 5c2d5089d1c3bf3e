"""Training a BERT WordPiece vocabulary on a corpus (the `tokenizers` WordPiece trainer)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import WordPiece
from tokenizers.trainers import WordPieceTrainer

from squeezemobile_jax.data.corpus import CorpusSource, CorpusSpec, describe
from squeezemobile_jax.data.token_cache import default_cache_dir
from squeezemobile_jax.data.tokenizer import (
    CONTINUATION_PREFIX,
    SPECIAL_TOKENS,
    UNK,
    WordPieceTokenizer,
    load_tokenizer,
)

logger = logging.getLogger(__name__)


def train_wordpiece(
    sentences: Iterable[str],
    vocab_size: int = 30522,
    *,
    lowercase: bool = True,
    min_frequency: int = 2,
    limit_alphabet: int = 1000,
    show_progress: bool = False,
) -> WordPieceTokenizer:
    """Trains a WordPiece vocabulary with BERT's normaliser and pre-tokeniser.

    Special tokens come first: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4. With
    `lowercase`, text is lowercased and accents are stripped (an uncased vocabulary).
    """
    backend = Tokenizer(WordPiece(unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX)
    trainer = WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        limit_alphabet=limit_alphabet,
        continuing_subword_prefix=CONTINUATION_PREFIX,
        show_progress=show_progress,
    )
    backend.train_from_iterator(sentences, trainer=trainer)
    return WordPieceTokenizer(backend, source=f"<trained WordPiece, {vocab_size} ids>")


def corpus_sentences(source: CorpusSource) -> Iterator[str]:
    """The non-empty lines (sentences) of an opened corpus."""
    return (line for line in source.lines() if line)


def trained_tokenizer(
    corpus: CorpusSpec | Any,
    vocab_size: int,
    *,
    lowercase: bool = True,
    min_frequency: int = 2,
    limit_alphabet: int = 1000,
    cache_dir: str | os.PathLike | None = None,
) -> WordPieceTokenizer:
    """A WordPiece tokenizer trained on `corpus`, cached in cache_dir and reused by later runs."""
    spec = CorpusSpec.from_config(corpus)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    source = CorpusSource(spec, cache_dir)
    params = f"{source.fingerprint}|{vocab_size}|{lowercase}|{min_frequency}|{limit_alphabet}"
    directory = cache_dir / f"wordpiece-{hashlib.sha256(params.encode()).hexdigest()[:20]}"
    if not (directory / "tokenizer.json").is_file():
        logger.info("training a %d-id WordPiece vocabulary on %s", vocab_size, describe(spec))
        tokenizer = train_wordpiece(
            corpus_sentences(source),
            vocab_size,
            lowercase=lowercase,
            min_frequency=min_frequency,
            limit_alphabet=limit_alphabet,
        )
        tmp = cache_dir / f".{directory.name}.{os.getpid()}.tmp"
        tokenizer.save(tmp)
        try:
            os.rename(tmp, directory)
        except OSError:  # built concurrently by another process
            shutil.rmtree(tmp, ignore_errors=True)
    return load_tokenizer(directory)
