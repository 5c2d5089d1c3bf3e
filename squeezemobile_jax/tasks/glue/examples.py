"""Reading one split's rows: the original GLUE TSV layout and HF `datasets` tables.

Original-layout TSVs are read with quoting off (a field may start with `"`); CoLA's train and
dev files have no header. A row that cannot be read (wrong number of fields, unknown label,
bad score) raises `GlueDataError` naming file:line, or with `bad_rows="skip"` is skipped,
counted and logged. Test rows are never skipped: every one needs a prediction.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from squeezemobile_jax.tasks.glue.specs import GlueDataError, GlueTask, SplitSpec

log = logging.getLogger(__name__)


@dataclasses.dataclass
class GlueExamples:
    """The rows of one split.

    texts: one list per text column (1 or 2), each [N]; labels: int64 ids [N] (classification)
    or float32 scores [N] (STS-B), None for unlabeled test sets; index: int64 [N], the test
    file's index column (row numbers elsewhere); skipped: rows left out (bad_rows="skip").
    """

    task: GlueTask
    split: SplitSpec
    source: str
    texts: tuple[list[str], ...]
    labels: np.ndarray | None
    index: np.ndarray
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.index)


class _RowErrors:
    """Collects bad rows: raises on the first (policy 'error') or counts and logs them."""

    def __init__(self, source: str, policy: str, allow_skip: bool):
        if policy not in ("error", "skip"):
            raise ValueError(f"data.bad_rows={policy!r}; use 'error' or 'skip'")
        self.source, self.skip = source, policy == "skip" and allow_skip
        self.count, self.examples = 0, []

    def add(self, where: str, message: str) -> None:
        if not self.skip:
            raise GlueDataError(
                f"{where}: {message}. Fix the row, or set data.bad_rows='skip' to skip bad "
                "training/dev rows (test rows are never skipped)."
            )
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {message}")

    def report(self) -> None:
        if self.count:
            log.warning(
                "%s: skipped %d bad row(s) (data.bad_rows='skip'); first: %s",
                self.source,
                self.count,
                "; ".join(self.examples),
            )


def parse_label(task: GlueTask, value: object) -> int | float:
    """A label as read from a file -> id (classification) or float score (STS-B).

    Accepts the GLUE file string ("1", "entailment"), the HF label name ("acceptable") or an
    integer id. Raises ValueError saying what was expected.
    """
    if task.labels is None:
        if isinstance(value, bool):
            raise ValueError(f"score {value!r} is not a number")
        try:
            score = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"score {value!r} is not a number") from None
        if not math.isfinite(score):
            raise ValueError(f"score {value!r} is not finite")
        return score
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= value < len(task.labels):
            return int(value)
        raise ValueError(f"label id {value} is outside 0..{len(task.labels) - 1}")
    text = str(value).strip()
    if text in task.labels:
        return task.labels.index(text)
    if task.label_names and text in task.label_names:
        return task.label_names.index(text)
    expected = list(task.labels) + [n for n in task.label_names or () if n not in task.labels]
    raise ValueError(f"unknown label {text!r} (expected one of {expected})")


def read_glue_tsv(
    path: str, task: GlueTask, split: SplitSpec, bad_rows: str = "error"
) -> GlueExamples:
    """Reads one file of the original GLUE download (tab-separated, quoting off)."""
    errors = _RowErrors(path, bad_rows, allow_skip=split.labeled)
    with open(path, encoding="utf-8-sig", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    start = 0
    if split.tsv_header:
        if not lines:
            raise GlueDataError(f"{path}: empty file; expected a header line")
        header = lines[0].split("\t")
        start = 1

        def column(name: str | int) -> int:
            if name not in header:
                raise GlueDataError(
                    f"{path}:1: no column {name!r} in the header {header}; is this the "
                    f"{split.name} {split.key} file of the original GLUE download?"
                )
            return header.index(name)

        num_fields = len(header)
    else:

        def column(name: str | int) -> int:
            return int(name)

        num_fields = split.tsv_num_fields
    text_cols = [column(c) for c in split.tsv_text]
    label_col = None if split.tsv_label is None else column(split.tsv_label)
    index_col = None if split.tsv_index is None else column(split.tsv_index)

    texts: tuple[list[str], ...] = tuple([] for _ in text_cols)
    labels: list[int | float] = []
    index: list[int] = []
    blank = 0
    for lineno in range(start + 1, len(lines) + 1):
        line = lines[lineno - 1]
        where = f"{path}:{lineno}"
        if not line.strip():
            blank += 1
            continue
        fields = line.split("\t")
        if num_fields is not None and len(fields) != num_fields:
            errors.add(where, f"{len(fields)} tab-separated fields, expected {num_fields}")
            continue
        try:
            label = None if label_col is None else parse_label(task, fields[label_col])
        except ValueError as e:
            errors.add(where, str(e))
            continue
        if index_col is None:
            row_index = len(index)
        else:
            try:
                row_index = int(fields[index_col])
            except ValueError:
                errors.add(where, f"index {fields[index_col]!r} is not an integer")
                continue
        if label is not None:
            labels.append(label)
        index.append(row_index)
        for out, col in zip(texts, text_cols):
            out.append(fields[col])
    if blank:
        log.info("%s: ignored %d blank line(s)", path, blank)
    errors.report()
    return _examples(
        task, split, path, texts, labels if label_col is not None else None, index, errors.count
    )


def _examples(
    task: GlueTask,
    split: SplitSpec,
    source: str,
    texts: tuple[list[str], ...],
    labels: list | None,
    index: list[int],
    skipped: int,
) -> GlueExamples:
    if labels is not None:
        dtype = np.float32 if task.is_regression else np.int64
        label_array: np.ndarray | None = np.asarray(labels, dtype=dtype)
    else:
        label_array = None
    if len(set(index)) != len(index):
        raise GlueDataError(f"{source}: the index column has repeated values")
    if not index:
        raise GlueDataError(f"{source}: no examples")
    return GlueExamples(
        task, split, source, texts, label_array, np.asarray(index, np.int64), skipped
    )


def dataset_to_examples(
    dataset, task: GlueTask, split: SplitSpec, source: str, bad_rows: str = "error"
) -> GlueExamples:
    """A `datasets.Dataset` with HF's GLUE columns -> `GlueExamples` (rows numbered from 1)."""
    columns = dataset.column_names
    missing = [c for c in task.text_columns if c not in columns]
    if missing:
        raise GlueDataError(
            f"{source}: no column(s) {missing} (columns: {columns}); local CSV/JSON/parquet "
            f"files need HF's GLUE column names {list(task.text_columns)} + 'label'"
        )
    has_label = "label" in columns
    if split.labeled and not has_label:
        raise GlueDataError(f"{source}: no 'label' column in a labeled split")
    errors = _RowErrors(source, bad_rows, allow_skip=split.labeled)
    data = dataset.to_dict()
    texts: tuple[list[str], ...] = tuple([] for _ in task.text_columns)
    labels: list[int | float] = []
    index: list[int] = []
    idx_col = data.get("idx")
    for row in range(len(dataset)):
        where = f"{source}: row {row + 1}"
        values = [data[c][row] for c in task.text_columns]
        if any(v is None for v in values):
            errors.add(where, "missing text")
            continue
        if split.labeled:
            try:
                labels.append(parse_label(task, data["label"][row]))
            except ValueError as e:
                errors.add(where, str(e))
                continue
        index.append(int(idx_col[row]) if idx_col is not None else row)
        for out, v in zip(texts, values):
            out.append(str(v))
    errors.report()
    return _examples(
        task, split, source, texts, labels if split.labeled else None, index, errors.count
    )
