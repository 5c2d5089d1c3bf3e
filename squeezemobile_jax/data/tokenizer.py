"""WordPiece tokenizer (BERT style) backed by the `tokenizers` library.

Loads a BERT `vocab.txt` or a `tokenizer.json` (or a directory holding either), checks that the
special tokens BERT needs are present, and encodes text exactly as HF's `BertTokenizerFast`:
`[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` with token type ids 0 / 1 and longest-first truncation.
Lowercasing and accent stripping follow the vocabulary (an uncased vocabulary is lowercased and
has accents stripped, as in the original BERT) unless overridden.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)
CONTINUATION_PREFIX = "##"
VOCAB_FILE = "vocab.txt"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# Share of (non-special) vocabulary entries with upper-case letters above which a vocabulary
# counts as cased. An uncased vocabulary has none; a cased one has thousands.
_CASED_VOCAB_THRESHOLD = 0.001


class TokenizerError(ValueError):
    """A vocabulary or tokenizer file that cannot be used (message names the file)."""


def read_vocab_file(path: str | os.PathLike) -> dict[str, int]:
    """Reads a BERT `vocab.txt` (one token per line, id = line number - 1).

    Raises TokenizerError naming file:line for an empty token or a duplicated token (HF would
    silently map both lines to the last id).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenizerError(f"{path}: vocabulary file not found") from None
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise TokenizerError(f"{path}:{line}: vocabulary is not valid UTF-8 ({e.reason})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # trailing newline
    vocab: dict[str, int] = {}
    for index, token in enumerate(lines):
        if token == "":
            raise TokenizerError(f"{path}:{index + 1}: empty line in vocabulary")
        if token in vocab:
            raise TokenizerError(
                f"{path}:{index + 1}: token {token!r} already defined on line {vocab[token] + 1}"
            )
        vocab[token] = index
    if not vocab:
        raise TokenizerError(f"{path}: vocabulary file is empty")
    return vocab


def vocab_is_cased(tokens: Sequence[str]) -> bool:
    """True if the vocabulary keeps upper case (so text must not be lowercased)."""
    words = [t for t in tokens if not (t.startswith("[") and t.endswith("]"))]
    upper = sum(1 for t in words if t != t.lower())
    return upper > _CASED_VOCAB_THRESHOLD * max(1, len(words))


def bert_backend(
    vocab: dict[str, int],
    *,
    lowercase: bool,
    strip_accents: bool | None = None,
    max_input_chars_per_word: int = 100,
) -> Tokenizer:
    """Builds the `tokenizers` pipeline HF's BertTokenizerFast builds for a vocab.txt."""
    backend = Tokenizer(
        WordPiece(vocab, unk_token=UNK, max_input_chars_per_word=max_input_chars_per_word)
    )
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX)
    present = [t for t in SPECIAL_TOKENS if t in vocab]
    backend.add_special_tokens(present)
    if CLS in vocab and SEP in vocab:
        backend.post_processor = bert_post_processor(vocab[CLS], vocab[SEP])
    return backend


def bert_post_processor(cls_id: int, sep_id: int) -> processors.TemplateProcessing:
    """`[CLS] A [SEP]` (types 0) and `[CLS] A [SEP] B [SEP]` (B part type 1)."""
    return processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)],
    )


class WordPieceTokenizer:
    """A BERT WordPiece tokenizer with the ids of its special tokens.

    Build with `load_tokenizer(path)` or from a `tokenizers.Tokenizer` whose vocabulary holds
    [PAD], [UNK], [CLS], [SEP] and [MASK].
    """

    def __init__(self, backend: Tokenizer, source: str = "<in memory>"):
        backend = Tokenizer.from_str(backend.to_str())  # private copy
        backend.no_truncation()  # a tokenizer.json may carry truncation/padding settings
        backend.no_padding()
        missing = [t for t in SPECIAL_TOKENS if backend.token_to_id(t) is None]
        if missing:
            raise TokenizerError(
                f"{source}: vocabulary lacks the special token(s) {', '.join(missing)}; BERT "
                f"pretraining needs all of {', '.join(SPECIAL_TOKENS)}. Add them to the "
                "vocabulary or train one with scripts/create_vocab.py."
            )
        self.source = source
        self._backend = backend
        self.pad_id: int = backend.token_to_id(PAD)
        self.unk_id: int = backend.token_to_id(UNK)
        self.cls_id: int = backend.token_to_id(CLS)
        self.sep_id: int = backend.token_to_id(SEP)
        self.mask_id: int = backend.token_to_id(MASK)
        self.vocab_size: int = backend.get_vocab_size(with_added_tokens=True)
        if backend.post_processor is None:
            backend.post_processor = bert_post_processor(self.cls_id, self.sep_id)
        # Corpus text is tokenised with special tokens treated as plain text, so a literal
        # "[SEP]" in a document never becomes the separator id.
        self._text_backend = Tokenizer.from_str(backend.to_str())
        self._text_backend.encode_special_tokens = True

    @property
    def backend(self) -> Tokenizer:
        """The underlying `tokenizers.Tokenizer` (no truncation, no padding)."""
        return self._backend

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id)

    @property
    def do_lower_case(self) -> bool:
        norm = json.loads(self._backend.to_str()).get("normalizer") or {}
        return _normalizer_lowercases(norm)

    def vocab_tokens(self) -> list[str]:
        """Tokens ordered by id (length vocab_size)."""
        vocab = self._backend.get_vocab(with_added_tokens=True)
        tokens = [""] * self.vocab_size
        for token, index in vocab.items():
            tokens[index] = token
        return tokens

    def continuation_mask(self) -> np.ndarray:
        """Bool [vocab_size]: True for word-continuation pieces (`##...`); whole-word masking."""
        return np.array([t.startswith(CONTINUATION_PREFIX) for t in self.vocab_tokens()])

    def fingerprint(self) -> str:
        """Hex digest identifying the tokenizer's behaviour (vocabulary, normaliser, ...)."""
        return hashlib.sha256(self._backend.to_str().encode("utf-8")).hexdigest()[:16]

    def encode(
        self, text: str, text_pair: str | None = None, max_length: int | None = None
    ) -> dict[str, list[int]]:
        """`input_ids`, `token_type_ids`, `attention_mask` of `[CLS] text [SEP] (pair [SEP])`.

        With max_length, the pair is truncated longest-first (as HF `truncation=True`).
        """
        return self.encode_batch([text], None if text_pair is None else [text_pair], max_length)[0]

    def encode_batch(
        self,
        texts: Sequence[str],
        text_pairs: Sequence[str] | None = None,
        max_length: int | None = None,
    ) -> list[dict[str, list[int]]]:
        """Batched `encode`; each entry has lists of length <= max_length (no padding)."""
        backend = self._backend if max_length is None else self._truncating(max_length)
        inputs = list(texts) if text_pairs is None else list(zip(texts, text_pairs, strict=True))
        encodings = backend.encode_batch(inputs)
        return [
            {
                "input_ids": e.ids,
                "token_type_ids": e.type_ids,
                "attention_mask": e.attention_mask,
            }
            for e in encodings
        ]

    def text_to_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """WordPiece ids of each text, without special tokens ([CLS] in text stays plain text)."""
        encodings = self._text_backend.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    @functools.lru_cache(maxsize=4)  # noqa: B019 (few tokenizers live per process)
    def _truncating(self, max_length: int) -> Tokenizer:
        backend = Tokenizer.from_str(self._backend.to_str())
        backend.enable_truncation(max_length, strategy="longest_first")
        return backend

    def save(self, directory: str | os.PathLike) -> Path:
        """Writes vocab.txt, tokenizer.json and tokenizer_config.json (HF-loadable)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tokens = self.vocab_tokens()
        _atomic_write(directory / VOCAB_FILE, "".join(t + "\n" for t in tokens))
        _atomic_write(directory / TOKENIZER_FILE, self._backend.to_str(pretty=True))
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.do_lower_case,
            "unk_token": UNK,
            "sep_token": SEP,
            "pad_token": PAD,
            "cls_token": CLS,
            "mask_token": MASK,
        }
        _atomic_write(directory / TOKENIZER_CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        return directory

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size}, source={self.source!r})"


def _normalizer_lowercases(norm: dict) -> bool:
    if norm.get("type") == "Sequence":
        return any(_normalizer_lowercases(n) for n in norm.get("normalizers", []))
    return bool(norm.get("lowercase")) or norm.get("type") == "Lowercase"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_tokenizer(
    path: str | os.PathLike,
    *,
    lowercase: bool | None = None,
    strip_accents: bool | None = None,
) -> WordPieceTokenizer:
    """Loads a WordPiece tokenizer from a vocab.txt, a tokenizer.json or a directory of them.

    A directory is searched for tokenizer.json first, then vocab.txt. For a vocab.txt,
    `lowercase=None` decides from the vocabulary (no upper-case entries -> lowercase);
    `strip_accents=None` follows `lowercase`, as in BERT. A tokenizer.json is used as written
    (its normaliser already says how to treat case and accents); overrides are then an error.
    """
    path = Path(path)
    if path.is_dir():
        for name in (TOKENIZER_FILE, VOCAB_FILE):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise TokenizerError(
                f"{path}: directory holds neither {TOKENIZER_FILE} nor {VOCAB_FILE}"
            )
    if not path.is_file():
        raise TokenizerError(f"{path}: tokenizer file not found")
    if path.suffix == ".json":
        if lowercase is not None or strip_accents is not None:
            raise TokenizerError(
                f"{path}: lowercase/strip_accents apply to a vocab.txt; a tokenizer.json defines "
                "its own normaliser"
            )
        try:
            backend = Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust error names no file
            raise TokenizerError(f"{path}: not a valid tokenizer.json ({e})") from e
        return WordPieceTokenizer(backend, source=str(path))
    vocab = read_vocab_file(path)
    if lowercase is None:
        lowercase = not vocab_is_cased(list(vocab))
    backend = bert_backend(vocab, lowercase=lowercase, strip_accents=strip_accents)
    return WordPieceTokenizer(backend, source=str(path))


def save_tokenizer(
    tokenizer: WordPieceTokenizer, workdir: str | os.PathLike, subdir: str = "tokenizer"
) -> Path:
    """Saves the tokenizer files into `workdir/subdir` and returns that directory.

    `load_tokenizer(returned_dir)` (or HF `AutoTokenizer.from_pretrained`) reloads it.
    """
    return tokenizer.save(Path(workdir) / subdir)
