"""A fine-tuned teacher's logits on the training set, in our label order, computed once."""

from __future__ import annotations

import io
import json
import logging
import os

import jax
import ml_collections
import numpy as np

from squeezemobile_jax import fileio
from squeezemobile_jax.data import WordPieceTokenizer
from squeezemobile_jax.hub.hf import CONFIG_NAME
from squeezemobile_jax.tasks.common import (
    is_hf_directory,
    is_workdir,
    load_pretrained,
    tokenizer_of,
)
from squeezemobile_jax.tasks.glue.encoding import encode_examples
from squeezemobile_jax.tasks.glue.examples import GlueExamples, parse_label
from squeezemobile_jax.tasks.glue.model import HEAD, runtime_overrides
from squeezemobile_jax.tasks.glue.predict import eval_batch_size, predict_logits
from squeezemobile_jax.tasks.glue.specs import GlueTask

log = logging.getLogger(__name__)

TEACHER_CACHE = "teacher_logits.npz"


def teacher_label_order(teacher_dir: str, task: GlueTask) -> np.ndarray:
    """[num_labels] column of the teacher's logits for each of our label ids.

    Read from an HF teacher's `id2label` when its names are the task's labels (GLUE strings or
    HF names); otherwise the teacher is assumed to use our order.
    """
    identity = np.arange(task.num_labels)
    config_path = os.path.join(teacher_dir, CONFIG_NAME)
    if task.is_regression or not fileio.exists(config_path):
        return identity
    id2label = json.loads(fileio.read_text(config_path)).get("id2label") or {}
    names = [id2label.get(str(i)) for i in range(len(id2label))]
    try:
        ours = [parse_label(task, n) for n in names]
    except ValueError:
        return identity
    if sorted(ours) != list(identity):
        return identity
    order = np.empty(task.num_labels, np.int64)
    order[ours] = np.arange(task.num_labels)  # teacher column j holds our label ours[j]
    return order


def teacher_logits(
    config: ml_collections.ConfigDict,
    task: GlueTask,
    train: GlueExamples,
    tokenizer: WordPieceTokenizer,
    workdir: str,
    mesh: jax.sharding.Mesh,
) -> np.ndarray | None:
    """The teacher's logits on every training example [N, C] in our label order, or None.

    Computed once with the teacher's own tokenizer (else the student's) and cached in the
    workdir; the teacher is `distill.teacher` with "{task}" replaced by the task name.
    """
    teacher_dir = (config.distill.get("teacher") or "").replace("{task}", task.name)
    if not teacher_dir or float(config.distill.weight) <= 0.0:
        return None
    cache = os.path.join(workdir, TEACHER_CACHE)
    if fileio.exists(cache):
        with np.load(io.BytesIO(fileio.read_bytes(cache))) as saved:
            if str(saved["teacher"]) == teacher_dir and len(saved["logits"]) == len(train):
                return saved["logits"]
    if not (is_workdir(teacher_dir) or is_hf_directory(teacher_dir)):
        raise FileNotFoundError(f"distill.teacher={teacher_dir!r}: not a workdir or HF directory")
    teacher = load_pretrained(teacher_dir, HEAD, **runtime_overrides(config))
    if teacher.config.num_labels != task.num_labels:
        raise ValueError(
            f"distill.teacher={teacher_dir!r} has {teacher.config.num_labels} outputs; "
            f"{task.name} needs {task.num_labels} (use a teacher fine-tuned on {task.name})"
        )
    try:
        teacher_tokenizer = tokenizer_of(teacher_dir)
    except ValueError:
        teacher_tokenizer = tokenizer
    length = min(int(config.data.max_seq_length), teacher.config.max_position_embeddings)
    arrays, _ = encode_examples(train, teacher_tokenizer, length)
    log.info("Teacher %s: logits on %d training examples", teacher_dir, len(train))
    batch = eval_batch_size(config.data.eval_batch_size)
    logits = predict_logits(teacher, arrays, batch, mesh)
    logits = logits[:, teacher_label_order(teacher_dir, task)]
    if jax.process_index() == 0:
        buffer = io.BytesIO()
        np.savez(buffer, logits=logits, teacher=np.asarray(teacher_dir))
        fileio.write_bytes(cache, buffer.getvalue())
    return logits
