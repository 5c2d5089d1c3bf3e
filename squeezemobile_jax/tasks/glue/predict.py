"""Predicting with a classifier: logits, labels, dev metrics, the majority baseline and
the test-set prediction files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from squeezemobile_jax.data.batching import eval_batches
from squeezemobile_jax.models import with_layer_list
from squeezemobile_jax.tasks.glue.encoding import MODEL_INPUTS, EncodedSplit
from squeezemobile_jax.tasks.glue.metrics import compute_metrics, task_score
from squeezemobile_jax.tasks.glue.specs import GlueTask
from squeezemobile_jax.tasks.glue.submission import write_predictions
from squeezemobile_jax.training import global_batch, inference_jit, to_host

PREDICTIONS_DIR = "predictions"


@inference_jit(static_argnums=0)
def _logits(graphdef: nnx.GraphDef, state: nnx.State, batch: Mapping[str, jax.Array]):
    model = nnx.merge(graphdef, state)
    return model(*(batch[k] for k in MODEL_INPUTS), deterministic=True).logits


def eval_batch_size(requested: int) -> int:
    """`requested` rounded up to a multiple of the device count (batches split evenly)."""
    devices = jax.device_count()
    return max(devices, -(-int(requested) // devices) * devices)


def predict_logits(
    model: nnx.Module, arrays: Mapping[str, np.ndarray], batch_size: int, mesh: jax.sharding.Mesh
) -> np.ndarray:
    """Logits [N, num_labels] (float32) of every example of `arrays`, in order.

    `arrays` holds MODEL_INPUTS [N, L]; every process passes the same arrays and gets all rows.
    """
    inputs = {k: arrays[k] for k in MODEL_INPUTS}
    n = len(inputs["input_ids"])
    graphdef, state = nnx.split(with_layer_list(model))
    outputs = []
    for host_batch in eval_batches(inputs, batch_size):
        batch = {k: host_batch[k] for k in MODEL_INPUTS}
        outputs.append(_logits(graphdef, state, global_batch(batch, mesh)))
    logits = np.concatenate([to_host(x) for x in outputs])  # row i of batch b = b*size + i
    return logits[:n].astype(np.float32)


def logits_to_predictions(logits: np.ndarray, regression: bool) -> np.ndarray:
    """[N, C] logits -> [N] label ids, or [N] scores for regression."""
    return logits[:, 0] if regression else np.argmax(logits, axis=-1)


def majority_baseline(train_labels: np.ndarray, dev: list[EncodedSplit], task: GlueTask) -> dict:
    """Dev metrics of always predicting the most frequent training label (classification)."""
    if task.is_regression:
        return {}
    majority = int(np.bincount(train_labels, minlength=task.num_labels).argmax())
    out = {}
    for s in dev:
        gold = s.arrays["labels"]
        out[s.name] = compute_metrics(task.metrics, np.full_like(gold, majority), gold)
    return out


def evaluate_dev(
    model: nnx.Module, task: GlueTask, dev: list[EncodedSplit], batch_size: int, mesh
) -> dict[str, Any]:
    """{"score": mean task score over the dev sets, "sets": {name: {metric: value}}}."""
    sets = {}
    for s in dev:
        logits = predict_logits(model, s.arrays, batch_size, mesh)
        predictions = logits_to_predictions(logits, task.is_regression)
        sets[s.name] = compute_metrics(task.metrics, predictions, s.arrays["labels"])
    return {"score": float(np.mean([task_score(m) for m in sets.values()])), "sets": sets}


def predict_test_sets(
    model: nnx.Module,
    task: GlueTask,
    test: list[EncodedSplit],
    batch_size: int,
    mesh: jax.sharding.Mesh,
    workdir: str,
) -> dict[str, str]:
    """Writes `workdir/predictions/<name>.tsv` per test set; {name: path relative to workdir}."""
    out = {}
    for s in test:
        logits = predict_logits(model, s.arrays, batch_size, mesh)
        predictions = logits_to_predictions(logits, task.is_regression)
        rel = os.path.join(PREDICTIONS_DIR, f"{s.name}.tsv")
        if jax.process_index() == 0:
            write_predictions(os.path.join(workdir, rel), task, s.examples.index, predictions)
        out[s.name] = rel
    return out
