"""The leaderboard's files: one `index\tprediction` TSV per test set, and the zip of all 11."""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Mapping, Sequence

import numpy as np

from squeezemobile_jax import fileio
from squeezemobile_jax.tasks.glue.specs import GlueTask

log = logging.getLogger(__name__)

SUBMISSION_HEADER = "index\tprediction"
STSB_RANGE = (0.0, 5.0)
# The leaderboard's file for every test set, in the order the site lists them.
SUBMISSION_FILES: tuple[str, ...] = (
    "CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI-m", "MNLI-mm", "QNLI", "RTE", "WNLI", "AX",
)  # fmt: skip


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
