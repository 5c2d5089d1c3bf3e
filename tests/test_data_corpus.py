"""Corpus readers, the built-in corpus, the tokenised-corpus cache, and their error messages."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_data_support import bert_tokenizer, bert_vocab_path, data_cache_dir  # noqa: F401
from transformers import BertTokenizerFast
from transformers.models.bert.tokenization_bert import load_vocab

from squeezemobile_jax.data import token_cache
from squeezemobile_jax.data.builtin_corpus import builtin_corpus_file
from squeezemobile_jax.data.corpus import CorpusError, CorpusSpec
from squeezemobile_jax.data.sentences import split_sentences, text_to_sentences
from squeezemobile_jax.data.token_cache import TokenizedCorpus, tokenized_corpus
from squeezemobile_jax.data.tokenizer import WordPieceTokenizer

REPO = Path(__file__).resolve().parents[1]

# Three documents; runs of blank lines and surrounding spaces must not matter.
BERT_FORMAT = """\
The first document starts here.
  It has a second sentence.\t\x20

Document two has one sentence.


Third document, first sentence!
Second sentence of the third document?
Last one.
"""
DOCS = [
    ["The first document starts here.", "It has a second sentence."],
    ["Document two has one sentence."],
    [
        "Third document, first sentence!",
        "Second sentence of the third document?",
        "Last one.",
    ],
]


@pytest.fixture(scope="module")
def hf(bert_vocab_path: Path) -> BertTokenizerFast:  # noqa: F811
    return BertTokenizerFast(vocab=load_vocab(str(bert_vocab_path)), do_lower_case=True)


def _expected_arrays(documents: list[list[str]], hf: BertTokenizerFast) -> TokenizedCorpus:
    ids = [[hf.encode(s, add_special_tokens=False) for s in doc] for doc in documents]
    return TokenizedCorpus.from_documents(ids)


def _assert_same_corpus(got: TokenizedCorpus, want: TokenizedCorpus) -> None:
    np.testing.assert_array_equal(np.asarray(got.tokens), want.tokens)
    np.testing.assert_array_equal(np.asarray(got.sentence_offsets), want.sentence_offsets)
    np.testing.assert_array_equal(np.asarray(got.document_offsets), want.document_offsets)


def test_text_corpus_is_read_in_bert_format(
    tmp_path: Path,
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
    hf: BertTokenizerFast,
) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text(BERT_FORMAT, encoding="utf-8")
    # No trailing blank line: the end of a file still ends its document.
    second.write_text("Another file.\nStill the same document.", encoding="utf-8")
    spec = CorpusSpec(kind="text", paths=(str(first), str(second)))
    corpus = tokenized_corpus(spec, bert_tokenizer, tmp_path / "cache", show_progress=False)
    want = _expected_arrays(DOCS + [["Another file.", "Still the same document."]], hf)
    _assert_same_corpus(corpus, want)
    assert corpus.info["documents"] == 4 and corpus.info["sentences"] == 8
    assert corpus.tokens.dtype == np.uint16


def test_cache_is_reused_and_invalidated_by_changes(
    tmp_path: Path,
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    hf: BertTokenizerFast,
) -> None:
    path = tmp_path / "c.txt"
    path.write_text(BERT_FORMAT, encoding="utf-8")
    first = tokenized_corpus(str(path), bert_tokenizer, tmp_path / "cache", show_progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("the cached corpus should have been reused")

    with monkeypatch.context() as m:
        m.setattr(token_cache, "_write_corpus", fail)
        again = tokenized_corpus(str(path), bert_tokenizer, tmp_path / "cache", show_progress=False)
    assert isinstance(again.tokens, np.memmap)
    _assert_same_corpus(again, _expected_arrays(DOCS, hf))
    path.write_text(BERT_FORMAT + "\nA new document.\n", encoding="utf-8")
    changed = tokenized_corpus(str(path), bert_tokenizer, tmp_path / "cache", show_progress=False)
    assert changed.num_documents == first.num_documents + 1
    assert len(list((tmp_path / "cache").glob("tokens-*"))) == 2


def test_worker_processes_give_identical_arrays(
    tmp_path: Path,
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    hf: BertTokenizerFast,
) -> None:
    monkeypatch.setattr(token_cache, "_BLOCK_LINES", 7)  # many blocks, some spanning documents
    path = tmp_path / "w.txt"
    path.write_text("\n".join([BERT_FORMAT] * 5), encoding="utf-8")
    one = tokenized_corpus(str(path), bert_tokenizer, tmp_path / "c1", show_progress=False)
    two = tokenized_corpus(
        str(path), bert_tokenizer, tmp_path / "c2", num_proc=2, show_progress=False
    )
    _assert_same_corpus(one, _expected_arrays(DOCS * 5, hf))
    _assert_same_corpus(two, one)


def test_empty_lines_and_documents_are_counted_and_logged(
    tmp_path: Path,
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "e.txt"
    # Control characters only: the BERT normaliser removes them, so these lines have no token.
    path.write_text("Real text.\n\x00\x01\n\n\x02\n\x03\n\nMore text.\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        corpus = tokenized_corpus(str(path), bert_tokenizer, tmp_path / "c", show_progress=False)
    assert corpus.num_documents == 2 and corpus.num_sentences == 2
    assert corpus.info["skipped_empty_sentences"] == 3
    assert corpus.info["skipped_empty_documents"] == 1
    assert "skipped 3 line(s) that produced no token and 1 document(s)" in caplog.text


def test_missing_file_and_empty_corpus_errors_name_the_file(
    tmp_path: Path,
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(CorpusError, match=rf"{missing}: file not found"):
        tokenized_corpus(str(missing), bert_tokenizer, tmp_path / "c")
    with pytest.raises(CorpusError, match="no file matches"):
        tokenized_corpus({"kind": "text", "paths": [str(tmp_path / "*.nothing")]}, bert_tokenizer)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n\x00\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=rf"{empty}: the corpus is empty: 4 line\(s\) read"):
        tokenized_corpus(str(empty), bert_tokenizer, tmp_path / "c", show_progress=False)
    assert not list((tmp_path / "c").glob("*tokens*"))  # no half-written cache left behind


def test_non_utf8_bytes_error_with_file_and_line_or_are_replaced_and_counted(
    tmp_path: Path,
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    hf: BertTokenizerFast,
) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"Good line.\nSecond line.\n\nCaf\xe9 au lait.\n")
    with pytest.raises(CorpusError, match=rf"{path}:4: not valid UTF-8 .*encoding_errors"):
        tokenized_corpus(str(path), bert_tokenizer, tmp_path / "c", show_progress=False)
    spec = {"kind": "text", "paths": [str(path)], "encoding_errors": "replace"}
    with caplog.at_level(logging.WARNING):
        corpus = tokenized_corpus(spec, bert_tokenizer, tmp_path / "c", show_progress=False)
    assert corpus.info["lines_with_replaced_bytes"] == 1
    assert f"{path}:4: replaced bytes" in caplog.text
    want = _expected_arrays([["Good line.", "Second line."], ["Caf\ufffd au lait."]], hf)
    _assert_same_corpus(corpus, want)


def test_hf_local_files_as_lines_and_as_documents(
    tmp_path: Path,
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
    hf: BertTokenizerFast,
) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text(BERT_FORMAT, encoding="utf-8")
    hf_cache = str(tmp_path / "hf_cache")
    as_lines = CorpusSpec(
        kind="hf", name="text", data_files=(str(text),), rows="lines", hf_cache_dir=hf_cache
    )
    corpus = tokenized_corpus(as_lines, bert_tokenizer, tmp_path / "c", show_progress=False)
    _assert_same_corpus(corpus, _expected_arrays(DOCS, hf))

    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(
        '{"body": "One. Two!\\nThree?"}\n{"body": ""}\n{"body": "Solo sentence here."}\n'
    )
    as_docs = {
        "kind": "hf",
        "name": "json",
        "data_files": [str(jsonl)],
        "text_column": "body",
        "sentence_split": "punctuation",
        "hf_cache_dir": hf_cache,
    }
    corpus = tokenized_corpus(as_docs, bert_tokenizer, tmp_path / "c", show_progress=False)
    _assert_same_corpus(
        corpus, _expected_arrays([["One.", "Two!", "Three?"], ["Solo sentence here."]], hf)
    )
    with pytest.raises(CorpusError, match="no column 'text'"):
        tokenized_corpus({**as_docs, "text_column": "text"}, bert_tokenizer, tmp_path / "c")


def test_unreachable_hub_dataset_explains_how_to_use_local_files(tmp_path: Path) -> None:
    hf_cache, cache = str(tmp_path / "hf"), str(tmp_path / "c")
    code = (
        "from squeezemobile_jax.data.corpus import CorpusSpec, CorpusSource\n"
        f"spec = CorpusSpec(kind='hf', name='some-org/some-corpus', hf_cache_dir={hf_cache!r})\n"
        f"CorpusSource(spec, {cache!r})\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert (
        "CorpusError: could not load the hub dataset hf:some-org/some-corpus/train" in result.stderr
    )
    assert "corpus.data_files" in result.stderr and "corpus.kind='text'" in result.stderr


def test_builtin_corpus_is_deterministic_and_big_enough(
    tmp_path: Path,
    data_cache_dir: Path,  # noqa: F811
) -> None:
    path = builtin_corpus_file(data_cache_dir)
    # Build it again in a fresh process and cache directory: byte-identical.
    code = (
        "from squeezemobile_jax.data.builtin_corpus import builtin_corpus_file\n"
        f"print(builtin_corpus_file({str(tmp_path)!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    other = Path(out.stdout.strip())
    assert other.parent == tmp_path
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (path, other)]
    assert digest[0] == digest[1]
    text = path.read_text(encoding="utf-8")
    documents = [d for d in text.split("\n\n") if d.strip()]
    assert len(text) > 1_500_000 and len(documents) > 300
    # Independent check against the source: the "assert" help topic's opening sentence.
    from pydoc_data.topics import topics

    assert topics["assert"].splitlines()[0].strip() in text
    assert "Assert statements are a convenient way to insert debugging assertions" in text


def test_builtin_corpus_tokenises_through_the_cache(
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
    data_cache_dir: Path,  # noqa: F811
) -> None:
    corpus = tokenized_corpus("builtin", bert_tokenizer, data_cache_dir, show_progress=False)
    assert corpus.num_tokens > 300_000 and corpus.num_documents > 300
    assert np.diff(np.asarray(corpus.sentence_offsets)).min() > 0  # no empty sentence kept
    assert np.diff(np.asarray(corpus.document_offsets)).min() > 0  # no empty document kept


def test_sentence_splitting() -> None:
    assert split_sentences("One two.  Three four!  Five? six. (Seven) 8 nine.") == [
        "One two.",
        "Three four!",
        "Five? six.",
        "(Seven) 8 nine.",
    ]
    doc = (
        "Summary line.\n\nA paragraph\nover two lines. Next one.\n\n    >>> code()\n    42\n====\n"
    )
    assert text_to_sentences(doc) == [
        "Summary line.",
        "A paragraph over two lines.",
        "Next one.",
        ">>> code()",
        "42",
    ]
    assert text_to_sentences("\n \n") == []


def test_corpus_spec_from_config_validates() -> None:
    assert CorpusSpec.from_config("builtin") == CorpusSpec()
    assert CorpusSpec.from_config("x.txt") == CorpusSpec(kind="text", paths=("x.txt",))
    spec = CorpusSpec.from_config({"kind": "hf", "name": "text", "data_files": "a.txt"})
    assert spec.data_files == ("a.txt",)
    with pytest.raises(CorpusError, match="unknown corpus option"):
        CorpusSpec.from_config({"kind": "text", "path": "a.txt"})
    with pytest.raises(CorpusError, match="needs corpus.paths"):
        CorpusSpec(kind="text")
