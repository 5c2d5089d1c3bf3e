"""GLUE task specs: each task's text columns, labels, metrics and splits.

Each task (`GLUE_TASKS`, keyed by the HF config name: cola, sst2, mrpc, stsb, qqp, mnli, qnli,
rte, wnli) names its text columns, its labels and its splits. Label id `i` is the `i`-th entry
of `GlueTask.labels`, which is the label as the GLUE files and the leaderboard write it
("0"/"1", "entailment", ...), in the order of HF's `ClassLabel` (so HF's integer labels are our
ids). STS-B is a regression task (`labels=None`). MNLI has two dev sets and three test sets:
matched, mismatched and the AX diagnostic, which is predicted by the MNLI model. AX is scored
as the GLUE site does, with R3 (the multi-class Matthews correlation) of the MNLI model's
predictions; with the labeled `diagnostic-full.tsv` at hand (local data only: the hub's AX
labels are hidden) a run reports that score too (`GlueTask.diagnostic`).
"""

from __future__ import annotations

import dataclasses

DEFAULT_HUB_ID = "nyu-mll/glue"


class GlueDataError(ValueError):
    """GLUE input that cannot be used; the message names the file (and line) and the fix."""


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
    metrics: tuple[str, ...]  # names in `tasks.glue.metrics.METRICS`
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


_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_matched": "mnli"}


def get_task(name: str) -> GlueTask:
    """The task called `name` (HF config name or GLUE name, any case: "sst2", "SST-2")."""
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; one of {sorted(GLUE_TASKS)}")
    return GLUE_TASKS[key]
