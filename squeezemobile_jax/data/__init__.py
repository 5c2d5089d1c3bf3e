"""Text -> batches: WordPiece tokenizer, pretraining corpora, and MLM + NSP/SOP examples.

Pretraining entry points:
  tokenizer = load_tokenizer("path/to/vocab.txt")          # or tokenizer.json, or a directory
  loader = PretrainingLoader("builtin", tokenizer, global_batch_size=256, start_step=step)
  batch = loader.batch_at(step)                             # pure; or: for batch in loader
  save_tokenizer(tokenizer, workdir)
"""

from squeezemobile_jax.data.corpus import CorpusError, CorpusSpec
from squeezemobile_jax.data.pretraining_examples import ExampleOptions, SpecialIds
from squeezemobile_jax.data.pretraining_loader import BATCH_KEYS, PretrainingLoader
from squeezemobile_jax.data.token_cache import (
    TokenizedCorpus,
    default_cache_dir,
    load_tokenized_corpus,
    tokenized_corpus,
)
from squeezemobile_jax.data.tokenizer import (
    TokenizerError,
    WordPieceTokenizer,
    load_tokenizer,
    save_tokenizer,
)
from squeezemobile_jax.data.vocab_training import train_wordpiece, trained_tokenizer

__all__ = [
    "BATCH_KEYS",
    "CorpusError",
    "CorpusSpec",
    "ExampleOptions",
    "PretrainingLoader",
    "SpecialIds",
    "TokenizedCorpus",
    "TokenizerError",
    "WordPieceTokenizer",
    "default_cache_dir",
    "load_tokenized_corpus",
    "load_tokenizer",
    "save_tokenizer",
    "tokenized_corpus",
    "train_wordpiece",
    "trained_tokenizer",
]
