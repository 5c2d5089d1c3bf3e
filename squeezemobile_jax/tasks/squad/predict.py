"""Predicting answer spans, writing the prediction files and scoring them."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import jax
import numpy as np
from flax import nnx

from squeezemobile_jax import fileio
from squeezemobile_jax.data.batching import eval_batches
from squeezemobile_jax.data.progress import Progress
from squeezemobile_jax.models import with_layer_list
from squeezemobile_jax.tasks.squad.examples import SquadExample
from squeezemobile_jax.tasks.squad.features import SquadFeatures
from squeezemobile_jax.tasks.squad.losses import qa_forward
from squeezemobile_jax.tasks.squad.metrics import evaluate
from squeezemobile_jax.tasks.squad.postprocess import (
    PostprocessOptions,
    SquadPredictions,
    postprocess,
)
from squeezemobile_jax.training import global_batch, inference_jit, to_host

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.json"
NBEST_FILE = "nbest_predictions.json"
NULL_ODDS_FILE = "null_odds.json"
EVAL_RESULTS_FILE = "eval_results.json"


@inference_jit(static_argnums=0)
def _logits(graphdef: nnx.GraphDef, state: nnx.State, batch: Mapping[str, jax.Array]):
    out = qa_forward(nnx.merge(graphdef, state), batch, deterministic=True)
    return out.start_logits, out.end_logits


def predict_logits(
    model: nnx.Module, features: SquadFeatures, batch_size: int, mesh: jax.sharding.Mesh
) -> tuple[np.ndarray, np.ndarray]:
    """start_logits, end_logits [F, T] (float32) of every window, on every process."""
    graphdef, state = nnx.split(with_layer_list(model))
    starts, ends = [], []
    inputs = features.model_inputs()
    steps = math.ceil(len(features) / batch_size)
    with Progress("SQuAD predict", total=steps, unit="batch") as progress:
        for host in eval_batches(inputs, batch_size):
            batch = global_batch({k: host[k] for k in inputs}, mesh)
            s, e = _logits(graphdef, state, batch)
            starts.append(to_host(s))
            ends.append(to_host(e))
            progress.update(1)
    n = len(features)
    t = features.input_ids.shape[1]
    if not starts:
        return np.zeros((0, t), np.float32), np.zeros((0, t), np.float32)
    return np.concatenate(starts)[:n], np.concatenate(ends)[:n]


def write_prediction_files(workdir: str, predictions: SquadPredictions, version_2: bool) -> None:
    """predictions.json, nbest_predictions.json and (v2.0) null_odds.json, from process 0."""
    if jax.process_index() != 0:
        return
    fileio.write_json(
        fileio.join(workdir, PREDICTIONS_FILE), predictions.predictions, sort_keys=False
    )
    fileio.write_json(fileio.join(workdir, NBEST_FILE), predictions.nbest, sort_keys=False)
    if version_2:
        fileio.write_json(
            fileio.join(workdir, NULL_ODDS_FILE), predictions.null_odds, sort_keys=False
        )


def evaluate_predictions(
    examples: list[SquadExample], predictions: SquadPredictions, version_2: bool
) -> dict[str, float]:
    """Official metrics of `predictions` against the examples' gold answers."""
    golds = {e.qid: [a.text for a in e.answers] for e in examples}
    return evaluate(
        golds,
        predictions.predictions,
        version_2=version_2,
        na_probs=predictions.null_odds if version_2 else None,
    )


def make_eval_fn(
    workdir: str,
    examples: list[SquadExample],
    features: SquadFeatures,
    options: PostprocessOptions,
    batch_size: int,
):
    """The loop's eval_fn: predict, post-process, write the prediction files, score."""
    version_2 = options.version_2_with_negative

    def eval_fn(model: nnx.Module, mesh: jax.sharding.Mesh, step: int) -> dict[str, float]:
        start, end = predict_logits(model, features, batch_size, mesh)
        preds = postprocess(
            examples,
            features.example_index,
            features.offsets,
            features.max_context,
            start,
            end,
            options,
        )
        write_prediction_files(workdir, preds, version_2)
        metrics = evaluate_predictions(examples, preds, version_2)
        if jax.process_index() == 0:
            fileio.write_json(fileio.join(workdir, EVAL_RESULTS_FILE), {"step": step, **metrics})
        log.info("SQuAD %s eval at step %d: %s", "v2.0" if version_2 else "v1.1", step, metrics)
        return metrics

    return eval_fn
