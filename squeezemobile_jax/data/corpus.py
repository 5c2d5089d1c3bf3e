"""Pretraining corpora: where the text comes from, read as BERT-format lines.

Every corpus is read as a stream of stripped lines in the BERT format: one sentence per line,
an empty line between documents. Three kinds:

- `builtin`: the offline corpus of CPython help topics and stdlib docstrings (no download).
- `text`: BERT-format text files. Each file also ends a document. Bytes that are not UTF-8
  raise an error naming file:line, or with `encoding_errors="replace"` are replaced by U+FFFD
  and the affected lines counted.
- `hf`: a HF `datasets` dataset: a hub name (online), a local loader (`text`, `json`, `csv`,
  `parquet`) with `data_files`, or a directory written by `Dataset.save_to_disk`. With
  `rows="documents"` every row of `text_column` is a document whose text is split into
  sentences (by line, or by punctuation); with `rows="lines"` rows are BERT-format lines.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from squeezemobile_jax.data.builtin_corpus import builtin_corpus_file, builtin_fingerprint
from squeezemobile_jax.data.sentences import text_to_sentences

logger = logging.getLogger(__name__)

LOCAL_HF_LOADERS = frozenset({"text", "json", "csv", "parquet", "arrow"})


class CorpusError(ValueError):
    """A corpus that cannot be read; the message says where (file:line) and how to fix it."""


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    """Where pretraining text comes from (see the module docstring for the kinds)."""

    kind: Literal["builtin", "text", "hf"] = "builtin"
    paths: tuple[str, ...] = ()  # text: files or glob patterns, read in the given order
    name: str | None = None  # hf: hub id, local loader name, or save_to_disk directory
    config: str | None = None  # hf: dataset configuration
    split: str = "train"  # hf
    text_column: str = "text"  # hf
    data_files: tuple[str, ...] = ()  # hf: local files for a loader like "text" or "json"
    rows: Literal["documents", "lines"] = "documents"  # hf: what a row is
    sentence_split: Literal["lines", "punctuation"] = "lines"  # hf documents -> sentences
    encoding_errors: Literal["strict", "replace"] = "strict"  # text: undecodable bytes
    hf_cache_dir: str | None = None  # hf: datasets cache (default: HF's)

    def __post_init__(self) -> None:
        if self.kind not in ("builtin", "text", "hf"):
            raise CorpusError(f"corpus.kind must be 'builtin', 'text' or 'hf', got {self.kind!r}")
        if self.kind == "text" and not self.paths:
            raise CorpusError("corpus.kind='text' needs corpus.paths (BERT-format text files)")
        if self.kind == "hf" and not self.name:
            raise CorpusError("corpus.kind='hf' needs corpus.name (hub id or local loader)")
        if self.rows not in ("documents", "lines"):
            raise CorpusError(f"corpus.rows must be 'documents' or 'lines', got {self.rows!r}")
        if self.sentence_split not in ("lines", "punctuation"):
            raise CorpusError(
                "corpus.sentence_split must be 'lines' or 'punctuation', "
                f"got {self.sentence_split!r}"
            )
        if self.encoding_errors not in ("strict", "replace"):
            raise CorpusError(
                "corpus.encoding_errors must be 'strict' or 'replace', "
                f"got {self.encoding_errors!r}"
            )

    @classmethod
    def from_config(cls, value: CorpusSpec | Mapping[str, Any] | str | os.PathLike) -> CorpusSpec:
        """Accepts a CorpusSpec, a mapping (e.g. an ml_collections ConfigDict), "builtin", or
        a path to a BERT-format text file."""
        if isinstance(value, CorpusSpec):
            return value
        if isinstance(value, (str, os.PathLike)):
            return cls() if str(value) == "builtin" else cls(kind="text", paths=(str(value),))
        fields = {f.name for f in dataclasses.fields(cls)}
        items = dict(value.items())
        unknown = sorted(set(items) - fields)
        if unknown:
            raise CorpusError(f"unknown corpus option(s) {unknown}; known: {sorted(fields)}")
        for key in ("paths", "data_files"):
            if key in items:
                v = items[key]
                items[key] = (v,) if isinstance(v, str) else tuple(v or ())
        return cls(**items)


@dataclasses.dataclass
class ReadStats:
    """What reading a corpus did besides yielding lines (for logs and the cache metadata)."""

    files: list[str] = dataclasses.field(default_factory=list)
    lines: int = 0
    lines_with_replaced_bytes: int = 0
    units_done: int = 0  # bytes (text) or rows (hf), for progress
    units_total: int | None = None
    unit: str = "B"


class CorpusSource:
    """An opened corpus: `lines()` streams BERT-format lines, `fingerprint` identifies them."""

    def __init__(self, spec: CorpusSpec, cache_dir: str | os.PathLike):
        self.spec = spec
        self.stats = ReadStats()
        self._dataset = None
        if spec.kind == "builtin":
            self._files = [builtin_corpus_file(cache_dir)]
            self.fingerprint = _digest({"builtin": builtin_fingerprint()})
        elif spec.kind == "text":
            self._files = resolve_text_files(spec.paths)
            self.fingerprint = _digest(
                {
                    "files": [_file_identity(p) for p in self._files],
                    "errors": spec.encoding_errors,
                }
            )
        else:
            self._files = []
            self._dataset = load_hf_dataset(spec)
            self.fingerprint = _digest(
                {
                    "hf": [spec.name, spec.config, spec.split, spec.text_column],
                    "data": getattr(self._dataset, "_fingerprint", None),
                    "rows": spec.rows,
                    "split": spec.sentence_split,
                }
            )
        self.stats.files = [str(p) for p in self._files] or [describe(spec)]
        if self._files:
            self.stats.units_total = sum(p.stat().st_size for p in self._files)
        else:
            self.stats.units_total, self.stats.unit = len(self._dataset), "rows"

    def lines(self) -> Iterator[str]:
        """Stripped lines; "" marks a document boundary (may repeat)."""
        if self._dataset is not None:
            yield from self._hf_lines()
            return
        for path in self._files:
            yield from read_text_lines(path, self.spec.encoding_errors, self.stats)
            yield ""

    def _hf_lines(self) -> Iterator[str]:
        col, stats = self.spec.text_column, self.stats
        for batch in self._dataset.iter(batch_size=1000):
            texts = batch[col]
            stats.units_done += len(texts)
            for text in texts:
                text = "" if text is None else str(text)
                if self.spec.rows == "lines":
                    stats.lines += 1
                    yield text.strip()
                    continue
                if self.spec.sentence_split == "punctuation":
                    sentences = text_to_sentences(text)
                else:
                    sentences = [s.strip() for s in text.splitlines()]
                for s in sentences:
                    if s:
                        stats.lines += 1
                        yield s
                yield ""


def describe(spec: CorpusSpec) -> str:
    """Short human-readable name of a corpus, for logs and errors."""
    if spec.kind == "builtin":
        return "built-in corpus"
    if spec.kind == "text":
        return ", ".join(spec.paths)
    parts = [spec.name, spec.config, spec.split]
    return "hf:" + "/".join(p for p in parts if p)


def resolve_text_files(patterns: tuple[str, ...] | list[str]) -> list[Path]:
    """Expands glob patterns (kept in order, each sorted); a missing file is an error."""
    files: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise CorpusError(f"{pattern}: no file matches this corpus pattern")
            files.extend(Path(m) for m in matches)
            continue
        path = Path(pattern)
        if not path.is_file():
            what = "is a directory, not a text file" if path.is_dir() else "file not found"
            raise CorpusError(f"{path}: {what} (corpus.paths)")
        files.append(path)
    return files


def read_text_lines(path: Path, errors: str, stats: ReadStats) -> Iterator[str]:
    """Stripped UTF-8 lines of a file; bad bytes raise (file:line) or are replaced and counted."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            stats.units_done += len(raw)
            stats.lines += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if errors != "replace":
                    raise CorpusError(
                        f"{path}:{lineno}: not valid UTF-8 (byte {raw[e.start : e.start + 1]!r} at "
                        f"column {e.start + 1}). Fix the file, or set corpus.encoding_errors="
                        "'replace' to replace undecodable bytes (affected lines are counted)."
                    ) from None
                line = raw.decode("utf-8", errors="replace")
                stats.lines_with_replaced_bytes += 1
                if stats.lines_with_replaced_bytes <= 5:
                    logger.warning("%s:%d: replaced bytes that are not UTF-8", path, lineno)
            yield line.strip()


def load_hf_dataset(spec: CorpusSpec):
    """Loads `spec` as a `datasets.Dataset`; offline or missing data gives a CorpusError."""
    import datasets  # heavy import, only for hf corpora

    name = spec.name
    assert name is not None
    try:
        if Path(name).is_dir() and not spec.data_files:
            ds = datasets.load_from_disk(name)
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[spec.split]
        else:
            kwargs: dict[str, Any] = {"split": spec.split, "cache_dir": spec.hf_cache_dir}
            if spec.config:
                kwargs["name"] = spec.config
            if spec.data_files:
                kwargs["data_files"] = list(spec.data_files)
            ds = datasets.load_dataset(name, **kwargs)
    except Exception as e:
        local = name in LOCAL_HF_LOADERS or bool(spec.data_files) or Path(name).exists()
        if local:
            raise CorpusError(
                f"could not load local corpus {describe(spec)} (data_files="
                f"{list(spec.data_files)}): {type(e).__name__}: {e}"
            ) from e
        raise CorpusError(
            f"could not load the hub dataset {describe(spec)}: {type(e).__name__}: {e}\n"
            "If this machine is offline (or the name is wrong), pass local files instead: "
            "corpus.kind='hf' with corpus.name='text' (or 'json', 'csv', 'parquet') and "
            "corpus.data_files=[...], or corpus.name=<a directory written by "
            "Dataset.save_to_disk>, or corpus.kind='text' with corpus.paths=[...] of "
            "BERT-format text files (one sentence per line, blank line between documents)."
        ) from e
    if spec.text_column not in ds.column_names:
        raise CorpusError(
            f"{describe(spec)}: no column {spec.text_column!r} (columns: {ds.column_names}); "
            "set corpus.text_column"
        )
    return ds


def _file_identity(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
