"""GLUE data: task specs, reading every task's files, encoding, and the submission files.

Each task (`GLUE_TASKS`, keyed by the HF config name: cola, sst2, mrpc, stsb, qqp, mnli, qnli,
rte, wnli) names its text columns, its labels and its splits. Label id `i` is the `i`-th entry
of `GlueTask.labels`, which is the label as the GLUE files and the leaderboard write it
("0"/"1", "entailment", ...), in the order of HF's `ClassLabel` (so HF's integer labels are our
ids). STS-B is a regression task (`labels=None`). MNLI has two dev sets and three test sets:
matched, mismatched and the AX diagnostic, which is predicted by the MNLI model. AX is scored
as the GLUE site does, with R3 (the multi-class Matthews correlation) of the MNLI model's
predictions; with the labeled `diagnostic-full.tsv` at hand (local data only: the hub's AX
labels are hidden) a run reports that score too (`GlueTask.diagnostic`).

Where a split comes from (`load_split`), first match wins:
  1. `files[key]`: one file for that split key (`SplitSpec.key`: train, validation, test,
     validation_matched, ...). `.tsv` is read in the original GLUE layout of the split;
     `.csv`, `.json`/`.jsonl` and `.parquet` are read with HF `datasets` and must have HF's
     column names (`sentence`, `sentence1`, `question1`, ... and `label`, optional `idx`).
  2. `glue_dir`: the original GLUE download (`<glue_dir>/CoLA/train.tsv`, `MNLI/dev_matched.tsv`,
     `diagnostic/diagnostic.tsv`, ...) or an HF-style snapshot (`<glue_dir>/cola/train-*.parquet`
     or `train.{parquet,csv,json,jsonl}`).
  3. the HF hub dataset `hub_id` (`nyu-mll/glue`). When the hub cannot be reached, loading
     fails at once with a message saying how to pass local files.
Original-layout TSVs are read with quoting off (a field may start with `"`); CoLA's train and
dev files have no header. A row that cannot be read (wrong number of fields, unknown label,
bad score) raises `GlueDataError` naming file:line, or with `bad_rows="skip"` is skipped,
counted and logged. Test rows are never skipped: every one needs a prediction.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import logging
import math
import os
import socket
import zipfile
from collections.abc import Mapping, Sequence
from urllib.parse import urlparse

import numpy as np

from squeezemobile_jax import fileio
from squeezemobile_jax.data.tokenizer import WordPieceTokenizer

log = logging.getLogger(__name__)

DEFAULT_HUB_ID = "nyu-mll/glue"
SUBMISSION_HEADER = "index\tprediction"
STSB_RANGE = (0.0, 5.0)
_LOCAL_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


class GlueDataError(ValueError):
    """GLUE input that cannot be used; the message names the file (and line) and the fix."""


# ------------------------------------------------------------------------------ specs
@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """One split of a task and where its columns are in each source.

    key: our name of the split and its HF split name (train, validation, test_matched, ...);
    hf_config: the HF config holding it (AX lives in config `ax`, split `test`);
    glue_files: candidate paths under `glue_dir` in the original layout (first existing wins);
    tsv_text / tsv_label / tsv_index: header names (or 0-based column numbers when
      `tsv_header` is False) of the text fields, the label and the test index;
    name: how reports and submission files call it (e.g. "MNLI-m", "AX").
    """

    key: str
    hf_config: str
    hf_split: str
    glue_files: tuple[str, ...]
    tsv_text: tuple[str | int, ...]
    tsv_label: str | int | None
    tsv_index: str | None = None
    tsv_header: bool = True
    tsv_num_fields: int | None = None  # required field count when there is no header
    name: str = ""

    @property
    def labeled(self) -> bool:
        return self.tsv_label is not None


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """A GLUE task: text columns (HF names), labels in id order, metrics and splits."""

    name: str  # HF config name: "cola", "sst2", ...
    display: str  # GLUE name: "CoLA", "SST-2", ...
    text_columns: tuple[str, ...]
    labels: tuple[str, ...] | None  # as the files and the leaderboard write them; None: regression
    label_names: tuple[str, ...] | None  # HF ClassLabel names, same order
    metrics: tuple[str, ...]  # names in `tasks.glue_metrics.METRICS`
    train: SplitSpec
    dev: tuple[SplitSpec, ...]
    test: tuple[SplitSpec, ...]
    diagnostic: SplitSpec | None = None  # labeled AX (optional, scored with DIAGNOSTIC_METRICS)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    def splits(self) -> tuple[SplitSpec, ...]:
        return (self.train, *self.dev, *self.test)


def _task(
    name: str,
    display: str,
    glue_dir: str,
    text_columns: tuple[str, ...],
    labels: tuple[str, ...] | None,
    label_names: tuple[str, ...] | None,
    metrics: tuple[str, ...],
    tsv_text: tuple[str, ...],
    tsv_label: str,
    tsv_index: str = "index",
    tsv_test_text: tuple[str, ...] | None = None,
) -> GlueTask:
    """A task with the usual train.tsv / dev.tsv / test.tsv files."""

    def split(key: str, file: str, labeled: bool) -> SplitSpec:
        return SplitSpec(
            key=key,
            hf_config=name,
            hf_split=key,
            glue_files=(f"{glue_dir}/{file}",),
            tsv_text=tsv_text if labeled else (tsv_test_text or tsv_text),
            tsv_label=tsv_label if labeled else None,
            tsv_index=None if labeled else tsv_index,
            name=display,
        )

    return GlueTask(
        name=name,
        display=display,
        text_columns=text_columns,
        labels=labels,
        label_names=label_names,
        metrics=metrics,
        train=split("train", "train.tsv", True),
        dev=(split("validation", "dev.tsv", True),),
        test=(split("test", "test.tsv", False),),
    )


def _cola() -> GlueTask:
    task = _task(
        "cola",
        "CoLA",
        "CoLA",
        ("sentence",),
        ("0", "1"),
        ("unacceptable", "acceptable"),
        ("mcc",),
        ("sentence",),
        "label",
    )
    # train/dev: no header; source, label, original mark, sentence.
    no_header = dict(tsv_text=(3,), tsv_label=1, tsv_header=False, tsv_num_fields=4)
    return dataclasses.replace(
        task,
        train=dataclasses.replace(task.train, **no_header),
        dev=(dataclasses.replace(task.dev[0], **no_header),),
    )


def _mnli() -> GlueTask:
    labels = ("entailment", "neutral", "contradiction")
    pair = ("sentence1", "sentence2")

    def split(key, file, labeled, name, hf_config="mnli", hf_split=None, files=None):
        return SplitSpec(
            key=key,
            hf_config=hf_config,
            hf_split=hf_split or key,
            glue_files=files or (f"MNLI/{file}",),
            tsv_text=pair,
            tsv_label="gold_label" if labeled else None,
            tsv_index=None if labeled else "index",
            name=name,
        )

    ax_files = ("diagnostic/diagnostic.tsv", "AX/AX.tsv", "AX/test.tsv", "AX.tsv")
    return GlueTask(
        name="mnli",
        display="MNLI",
        text_columns=("premise", "hypothesis"),
        labels=labels,
        label_names=labels,
        metrics=("accuracy",),
        train=split("train", "train.tsv", True, "MNLI"),
        dev=(
            split("validation_matched", "dev_matched.tsv", True, "MNLI-m"),
            split("validation_mismatched", "dev_mismatched.tsv", True, "MNLI-mm"),
        ),
        test=(
            split("test_matched", "test_matched.tsv", False, "MNLI-m"),
            split("test_mismatched", "test_mismatched.tsv", False, "MNLI-mm"),
            split("ax", "", False, "AX", hf_config="ax", hf_split="test", files=ax_files),
        ),
        diagnostic=SplitSpec(
            key="ax_labeled",
            hf_config="",  # not on the hub: its AX labels are -1
            hf_split="",
            glue_files=("diagnostic/diagnostic-full.tsv", "MNLI/diagnostic-full.tsv"),
            tsv_text=("Premise", "Hypothesis"),
            tsv_label="Label",
            name="AX",
        ),
    )


def _all_tasks() -> dict[str, GlueTask]:
    binary = ("0", "1")
    nli2 = ("entailment", "not_entailment")
    pair = ("sentence1", "sentence2")
    tasks = [
        _cola(),
        _task(
            "sst2", "SST-2", "SST-2", ("sentence",), binary, ("negative", "positive"),
            ("accuracy",), ("sentence",), "label",
        ),
        _task(
            "mrpc", "MRPC", "MRPC", pair, binary, ("not_equivalent", "equivalent"),
            ("accuracy", "f1"), ("#1 String", "#2 String"), "Quality",
        ),
        _task("stsb", "STS-B", "STS-B", pair, None, None, ("pearson", "spearman"), pair, "score"),
        _task(
            "qqp", "QQP", "QQP", ("question1", "question2"), binary,
            ("not_duplicate", "duplicate"), ("accuracy", "f1"), ("question1", "question2"),
            "is_duplicate", tsv_index="id",
        ),
        _mnli(),
        _task(
            "qnli", "QNLI", "QNLI", ("question", "sentence"), nli2, nli2, ("accuracy",),
            ("question", "sentence"), "label",
        ),
        _task("rte", "RTE", "RTE", pair, nli2, nli2, ("accuracy",), pair, "label"),
        _task(
            "wnli", "WNLI", "WNLI", pair, binary, ("not_entailment", "entailment"),
            ("accuracy",), pair, "label",
        ),
    ]  # fmt: skip
    return {t.name: t for t in tasks}


GLUE_TASKS: dict[str, GlueTask] = _all_tasks()
DIAGNOSTIC_METRICS = ("mcc",)  # R3, Gorodkin's K-class MCC (GLUE paper §4)
# The leaderboard's file for every test set, in the order the site lists them.
SUBMISSION_FILES: tuple[str, ...] = (
    "CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI-m", "MNLI-mm", "QNLI", "RTE", "WNLI", "AX",
)  # fmt: skip
_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_matched": "mnli"}


def get_task(name: str) -> GlueTask:
    """The task called `name` (HF config name or GLUE name, any case: "sst2", "SST-2")."""
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; one of {sorted(GLUE_TASKS)}")
    return GLUE_TASKS[key]


# ---------------------------------------------------------------------------- examples
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


# ----------------------------------------------------------------------------- sources
def read_local_file(
    path: str,
    task: GlueTask,
    split: SplitSpec,
    bad_rows: str = "error",
    cache_dir: str | None = None,
) -> GlueExamples:
    """A split from one local file: `.tsv` in the GLUE layout, else CSV/JSON/parquet."""
    if not os.path.isfile(path):
        raise GlueDataError(f"{path}: file not found (data for {task.name} {split.key})")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".tsv":
        return read_glue_tsv(path, task, split, bad_rows)
    if ext not in _LOCAL_BUILDERS:
        raise GlueDataError(
            f"{path}: unsupported file type {ext!r}; use .tsv (GLUE layout), .csv, .json, "
            ".jsonl or .parquet"
        )
    import datasets

    kwargs = {"keep_default_na": False} if ext == ".csv" else {}
    try:
        ds = datasets.load_dataset(
            _LOCAL_BUILDERS[ext],
            data_files={"rows": path},
            split="rows",
            cache_dir=cache_dir,
            **kwargs,
        )
    except Exception as e:
        raise GlueDataError(f"{path}: could not read ({type(e).__name__}: {e})") from e
    return dataset_to_examples(ds, task, split, path, bad_rows)


def find_in_glue_dir(glue_dir: str, split: SplitSpec) -> str | None:
    """The file holding `split` under `glue_dir` (GLUE layout or HF snapshot), or None."""
    for rel in split.glue_files:
        path = os.path.join(glue_dir, rel)
        if os.path.isfile(path):
            return path
    if not split.hf_config:
        return None
    hf_dir = os.path.join(glue_dir, split.hf_config)
    for pattern in (f"{split.hf_split}.*", f"{split.hf_split}-*"):
        found = sorted(
            p
            for p in glob.glob(os.path.join(glob.escape(hf_dir), pattern))
            if os.path.splitext(p)[1].lower() in _LOCAL_BUILDERS
        )
        if len(found) > 1:
            raise GlueDataError(f"{hf_dir}: several files for split {split.hf_split}: {found}")
        if found:
            return found[0]
    return None


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the HF hub endpoint answers a TCP connection (False in offline mode)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _offline_message(hub_id: str, task: GlueTask) -> str:
    return (
        f"cannot load GLUE task {task.name!r} from the HF hub dataset {hub_id!r}: the hub is "
        "not reachable (offline, or HF_HUB_OFFLINE=1). Pass local files instead: "
        "--config.data.glue_dir=DIR with the original GLUE download (DIR/CoLA/train.tsv, "
        "DIR/MNLI/dev_matched.tsv, DIR/diagnostic/diagnostic.tsv, ...) or an HF-style copy "
        f"(DIR/{task.name}/train-00000-of-00001.parquet, ...), or one file per split with "
        f"--config.data.files.train=PATH (keys: {', '.join(s.key for s in task.splits())})."
    )


def load_hub_split(
    hub_id: str,
    task: GlueTask,
    split: SplitSpec,
    cache_dir: str | None = None,
    bad_rows: str = "error",
) -> GlueExamples:
    """A split from the HF hub (`datasets.load_dataset(hub_id, config, split=...)`)."""
    if not hub_reachable():
        raise GlueDataError(_offline_message(hub_id, task))
    import datasets

    try:
        ds = datasets.load_dataset(
            hub_id, split.hf_config, split=split.hf_split, cache_dir=cache_dir
        )
    except Exception as e:
        raise GlueDataError(
            f"{hub_id} {split.hf_config}/{split.hf_split}: {type(e).__name__}: {e}\n"
            + _offline_message(hub_id, task)
        ) from e
    source = f"{hub_id}:{split.hf_config}/{split.hf_split}"
    return dataset_to_examples(ds, task, split, source, bad_rows)


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where a run's GLUE data comes from (see the module docstring for the order)."""

    files: Mapping[str, str] = dataclasses.field(default_factory=dict)
    glue_dir: str | None = None
    hub_id: str = DEFAULT_HUB_ID
    bad_rows: str = "skip"
    cache_dir: str | None = None


def load_split(
    source: DataSource, task: GlueTask, split: SplitSpec, required: bool = True
) -> GlueExamples | None:
    """Reads `split` from the first source that has it.

    With local data (`files` or `glue_dir` set) the hub is never asked: a missing required
    split raises GlueDataError, a missing optional one (a test set) returns None with a warning.
    """
    if source.files.get(split.key):
        return read_local_file(
            source.files[split.key], task, split, source.bad_rows, source.cache_dir
        )
    local = bool(source.glue_dir) or any(source.files.values())
    if not local and not split.hf_config:
        return None  # a split the hub does not have (the labeled AX diagnostic)
    if not local:
        return load_hub_split(source.hub_id, task, split, source.cache_dir, source.bad_rows)
    looked = [f"data.files.{split.key}"]
    if source.glue_dir:
        path = find_in_glue_dir(source.glue_dir, split)
        if path is not None:
            return read_local_file(path, task, split, source.bad_rows, source.cache_dir)
        looked += [os.path.join(source.glue_dir, p) for p in split.glue_files]
        if split.hf_config:
            hf_files = os.path.join(source.glue_dir, split.hf_config, f"{split.hf_split}[-.]*")
            looked.append(hf_files)
    message = f"{task.name} {split.key}: no data; looked for {looked}"
    if required:
        raise GlueDataError(message)
    log.warning("%s; skipping it (no %s predictions)", message, split.name)
    return None


# ---------------------------------------------------------------------------- encoding
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


# -------------------------------------------------------------------------- submission
def format_prediction(task: GlueTask, value: float | int) -> str:
    """A prediction as the leaderboard wants it: the label string, or a score in [0, 5]."""
    if task.labels is None:
        score = min(max(float(value), STSB_RANGE[0]), STSB_RANGE[1])
        return f"{score:.3f}"
    return task.labels[int(value)]


def write_predictions(
    path: str, task: GlueTask, index: Sequence[int] | np.ndarray, predictions: np.ndarray
) -> None:
    """Writes `index\\tprediction` rows (test-file order) for ids/scores `predictions` [N]
    to `path` (local, replaced atomically, or on an object store)."""
    if len(index) != len(predictions):
        raise ValueError(f"{len(index)} indices but {len(predictions)} predictions")
    rows = "".join(f"{int(i)}\t{format_prediction(task, p)}\n" for i, p in zip(index, predictions))
    fileio.write_bytes(path, (SUBMISSION_HEADER + "\n" + rows).encode("utf-8"))


def write_submission_zip(path: str, files: Mapping[str, str]) -> list[str]:
    """Zips {leaderboard name: predictions tsv path} into `path`, every file at the zip root.

    Returns the names of `SUBMISSION_FILES` that are missing (the leaderboard wants all 11).
    """
    unknown = sorted(set(files) - set(SUBMISSION_FILES))
    if unknown:
        raise ValueError(f"not GLUE submission files: {unknown}; names: {SUBMISSION_FILES}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in SUBMISSION_FILES:
            if name in files:
                zf.writestr(f"{name}.tsv", fileio.read_bytes(files[name]))
    fileio.write_bytes(path, buffer.getvalue())
    missing = [n for n in SUBMISSION_FILES if n not in files]
    if missing:
        log.warning("%s lacks %s; the GLUE leaderboard only accepts all 11 files", path, missing)
    return missing
