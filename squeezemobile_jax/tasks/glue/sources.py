"""Where a GLUE split comes from: local files, a GLUE directory or the HF hub.

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
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
from collections.abc import Mapping

import ml_collections

from squeezemobile_jax.data.hub import hub_offline, hub_reachable
from squeezemobile_jax.tasks.glue.examples import GlueExamples, dataset_to_examples, read_glue_tsv
from squeezemobile_jax.tasks.glue.specs import DEFAULT_HUB_ID, GlueDataError, GlueTask, SplitSpec

log = logging.getLogger(__name__)

_LOCAL_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


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


def _offline_message(hub_id: str, task: GlueTask) -> str:
    return (
        f"cannot load GLUE task {task.name!r} from the HF hub dataset {hub_id!r}: the hub is "
        "not reachable (with a cached copy, set HF_HUB_OFFLINE=1 to use it). Pass local files "
        "instead: "
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
    if not hub_offline() and not hub_reachable():
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


def data_source(config: ml_collections.ConfigDict) -> DataSource:
    """The `DataSource` of a run's `config.data` section."""
    data = config.data
    files = {k: v for k, v in (data.get("files") or {}).items() if v}
    return DataSource(
        files=files,
        glue_dir=data.get("glue_dir") or None,
        hub_id=data.get("hub_id") or DEFAULT_HUB_ID,
        bad_rows=data.get("bad_rows", "skip"),
        cache_dir=data.get("cache_dir") or None,
    )
