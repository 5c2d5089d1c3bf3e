"""SQuAD v1.1 / v2.0 fine-tuning: `run(config, workdir)` (``config.task = 'squad'``).

    python train.py --config configs/squad.py:model=mobilebert,version=2.0 \
        --config.init=INIT_DIR --workdir DIR

The run reads the training and evaluation sets (local JSON files or the hub datasets), makes
BERT-style windowed features, trains a `question_answering` model (initialised from
`config.init`: a train.py / distill.py workdir or an HF directory; empty = from scratch) with
the generic loop, and at each evaluation writes into the workdir `predictions.json`,
`nbest_predictions.json`, for v2.0 `null_odds.json`, and `eval_results.json` (the official
metrics, for v2.0 with the best no-answer threshold search over `null_odds`).

Restarting on a workdir resumes training; on a finished one it only evaluates again, so
``--config.postprocess.null_score_diff_threshold=T`` (e.g. the evaluation's best_f1_thresh)
rewrites the predictions with another no-answer threshold without training.

Loss: the mean over the batch of (cross-entropy of the start position + cross-entropy of the
end position) / 2, over all T positions of start_logits / end_logits [B, T].
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from squeezemobile_jax.data.batching import EpochBatches, eval_batches
from squeezemobile_jax.data.progress import Progress
from squeezemobile_jax.data.squad import (
    HUB_DATASETS,
    FeatureOptions,
    SquadData,
    SquadExample,
    SquadFeatures,
    build_features,
    load_hub_squad,
    read_squad_file,
)
from squeezemobile_jax.data.tokenizer import WordPieceTokenizer, load_tokenizer, save_tokenizer
from squeezemobile_jax.models import PRESETS, build_model, with_layer_list
from squeezemobile_jax.tasks.common import (
    TOKENIZER_DIR,
    is_hf_directory,
    is_workdir,
    load_pretrained,
    model_config_from_section,
    num_params,
    write_model_spec,
)
from squeezemobile_jax.tasks.squad_metrics import evaluate
from squeezemobile_jax.tasks.squad_postprocess import (
    PostprocessOptions,
    SquadPredictions,
    postprocess,
)
from squeezemobile_jax.training import (
    Task,
    global_batch,
    inference_jit,
    make_mesh,
    maybe_initialize_distributed,
    to_host,
    train_and_evaluate,
)

log = logging.getLogger(__name__)

HEAD = "question_answering"
PREDICTIONS_FILE = "predictions.json"
NBEST_FILE = "nbest_predictions.json"
NULL_ODDS_FILE = "null_odds.json"
EVAL_RESULTS_FILE = "eval_results.json"
VERSIONS = ("1.1", "2.0")


# ------------------------------------------------------------------------------ loss
def span_loss(
    start_logits: jax.Array,
    end_logits: jax.Array,
    start_positions: jax.Array,
    end_positions: jax.Array,
) -> jax.Array:
    """Mean over the batch of (CE(start) + CE(end)) / 2; logits [B, T], positions [B]."""

    def cross_entropy(logits: jax.Array, positions: jax.Array) -> jax.Array:
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        return -jnp.take_along_axis(logp, positions[:, None], axis=-1)[:, 0]

    per_example = cross_entropy(start_logits, start_positions) + cross_entropy(
        end_logits, end_positions
    )
    return jnp.mean(per_example) / 2


def _forward(model: nnx.Module, batch: Mapping[str, jax.Array], **kwargs: Any):
    return model(
        batch["input_ids"],
        batch["attention_mask"].astype(jnp.int32),
        batch["token_type_ids"].astype(jnp.int32),
        **kwargs,
    )


def qa_loss(model: nnx.Module, batch: Mapping[str, jax.Array], rng: jax.Array):
    """The loop's loss_fn: span loss with dropout from `rng`; aux: start/end accuracy."""
    out = _forward(model, batch, deterministic=False, dropout_rng=rng)
    loss = span_loss(
        out.start_logits, out.end_logits, batch["start_positions"], batch["end_positions"]
    )
    aux = {
        "start_accuracy": jnp.mean(jnp.argmax(out.start_logits, -1) == batch["start_positions"]),
        "end_accuracy": jnp.mean(jnp.argmax(out.end_logits, -1) == batch["end_positions"]),
    }
    return loss, aux


# -------------------------------------------------------------------------- predicting
@inference_jit(static_argnums=0)
def _logits(graphdef: nnx.GraphDef, state: nnx.State, batch: Mapping[str, jax.Array]):
    out = _forward(nnx.merge(graphdef, state), batch, deterministic=True)
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


# ------------------------------------------------------------------------------ outputs
def _write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def write_prediction_files(workdir: str, predictions: SquadPredictions, version_2: bool) -> None:
    """predictions.json, nbest_predictions.json and (v2.0) null_odds.json, from process 0."""
    if jax.process_index() != 0:
        return
    os.makedirs(workdir, exist_ok=True)
    _write_json(os.path.join(workdir, PREDICTIONS_FILE), predictions.predictions)
    _write_json(os.path.join(workdir, NBEST_FILE), predictions.nbest)
    if version_2:
        _write_json(os.path.join(workdir, NULL_ODDS_FILE), predictions.null_odds)


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
            _write_json(os.path.join(workdir, EVAL_RESULTS_FILE), {"step": step, **metrics})
        log.info("SQuAD %s eval at step %d: %s", "v2.0" if version_2 else "v1.1", step, metrics)
        return metrics

    return eval_fn


# ------------------------------------------------------------------------------ set-up
def check_version(version: Any) -> bool:
    """True for SQuAD 2.0, False for 1.1; anything else is an error."""
    version = str(version)
    if version not in VERSIONS:
        raise ValueError(f"config.version={version!r}: choose one of {VERSIONS}")
    return version == "2.0"


def resolve_tokenizer(config: ml_collections.ConfigDict) -> WordPieceTokenizer:
    """config.tokenizer.path, else the init workdir's tokenizer/ or the init HF directory's."""
    path = config.get("tokenizer", {}).get("path") or ""
    init = config.get("init") or ""
    if not path and init:
        path = os.path.join(init, TOKENIZER_DIR) if is_workdir(init) else init
    if not path:
        raise ValueError(
            "no tokenizer: set config.tokenizer.path (a vocab.txt, tokenizer.json or a directory "
            "holding one), or config.init to a workdir or HF directory that has one"
        )
    return load_tokenizer(path)


def load_split(config: ml_collections.ConfigDict, which: str, version_2: bool) -> SquadData:
    """The 'train' or 'eval' set: config.data.{which}_file if set, else the hub split."""
    data = config.data
    path = data.get(f"{which}_file") or ""
    on_error = data.get("on_error", "raise")
    if path:
        return read_squad_file(path, allow_impossible=version_2, on_error=on_error)
    name = data.get("hub_dataset") or HUB_DATASETS["2.0" if version_2 else "1.1"]
    split = data.get(f"{which}_split") or ("train" if which == "train" else "validation")
    return load_hub_squad(name, split, allow_impossible=version_2, on_error=on_error)


def build_qa_model(config: ml_collections.ConfigDict, tokenizer: WordPieceTokenizer) -> nnx.Module:
    """From config.init (with the non-empty config.model fields as overrides) or from scratch."""
    section = config.model
    seed = int(config.get("seed", 0))
    init = config.get("init") or ""
    if init:
        overrides = {k: v for k, v in section.items() if k != "preset" and v is not None}
        model = load_pretrained(init, HEAD, seed=seed, **overrides)
        expected = PRESETS[section.preset][0] if section.get("preset") in PRESETS else None
        if expected is not None and not isinstance(model.config, expected):
            log.warning(
                "config.model.preset=%s is a %s but init=%s holds a %s; using the init model",
                section.preset,
                expected.__name__,
                init,
                type(model.config).__name__,
            )
    else:
        model_config = model_config_from_section(section, vocab_size=tokenizer.vocab_size)
        model = build_model(model_config, HEAD, seed=seed)
    model_config = model.config
    if tokenizer.vocab_size > model_config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{model_config.vocab_size}; use the tokenizer the model was trained with"
        )
    max_len = int(config.data.max_seq_length)
    if max_len > model_config.max_position_embeddings:
        raise ValueError(
            f"config.data.max_seq_length={max_len} exceeds the model's max_position_embeddings="
            f"{model_config.max_position_embeddings}"
        )
    return model


def resolve_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> None:
    """Fills train.num_steps from train.num_epochs (when num_steps <= 0) and the warmup steps
    from train.warmup_proportion (when > 0), in place."""
    train = config.train
    if int(train.num_steps or 0) <= 0:
        train.num_steps = max(1, math.ceil(float(train.num_epochs) * steps_per_epoch))
    proportion = float(train.get("warmup_proportion", 0.0) or 0.0)
    if proportion > 0:
        config.optimizer.schedule.warmup_steps = int(proportion * int(train.num_steps))


def _is_hf_or_workdir(path: str) -> bool:
    return is_workdir(path) or is_hf_directory(path)


# ---------------------------------------------------------------------------------- run
def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Fine-tunes and evaluates on SQuAD; returns {"step", **eval metrics}."""
    maybe_initialize_distributed(config)
    config = config.copy_and_resolve_references()
    version_2 = check_version(config.get("version", "1.1"))
    init = config.get("init") or ""
    if init and not _is_hf_or_workdir(init):
        raise FileNotFoundError(
            f"config.init={init!r} is neither a train.py/distill.py workdir nor an HF directory"
        )
    tokenizer = resolve_tokenizer(config)
    feature_options = FeatureOptions(
        max_seq_length=int(config.data.max_seq_length),
        doc_stride=int(config.data.doc_stride),
        max_query_length=int(config.data.max_query_length),
    )
    post = config.postprocess
    post_options = PostprocessOptions(
        n_best_size=int(post.n_best_size),
        max_answer_length=int(post.max_answer_length),
        version_2_with_negative=version_2,
        null_score_diff_threshold=float(post.null_score_diff_threshold),
    )
    on_error = config.data.get("on_error", "raise")
    train_data = load_split(config, "train", version_2)
    eval_data = load_split(config, "eval", version_2)
    train_features, _ = build_features(
        train_data.examples, tokenizer, feature_options, training=True, on_error=on_error
    )
    train_arrays = train_features.training_arrays()  # offsets etc. are only needed for eval
    del train_features, train_data
    eval_features, _ = build_features(eval_data.examples, tokenizer, feature_options)

    model = build_qa_model(config, tokenizer)
    write_model_spec(workdir, model.config, HEAD)
    if jax.process_index() == 0:
        save_tokenizer(tokenizer, workdir)

    batches = EpochBatches(
        train_arrays,
        int(config.train.batch_size),
        seed=int(config.get("seed", 0)),
    )
    resolve_schedule(config, batches.steps_per_epoch)
    log.info(
        "SQuAD %s: %d train windows (%d steps per epoch, %d steps), %d eval windows",
        config.version,
        batches.num_examples,
        batches.steps_per_epoch,
        config.train.num_steps,
        len(eval_features),
    )
    eval_fn = make_eval_fn(
        workdir,
        eval_data.examples,
        eval_features,
        post_options,
        int(config.eval.batch_size),
    )
    seq_len = feature_options.max_seq_length
    task = Task(
        loss_fn=qa_loss,
        eval_fn=eval_fn,
        count_fn=lambda b: {
            "examples": float(len(b["input_ids"])),
            "tokens": float(np.sum(b["attention_mask"])),
        },
        flops_per_example=6.0 * num_params(model) * seq_len,
    )
    result = train_and_evaluate(config, workdir, task, model, batches.iterator)
    metrics = dict(result.eval_metrics)
    finished = result.step >= int(config.train.num_steps) and not result.preempted
    if not metrics and finished and config.train.get("eval_at_end", True):
        # Restarted on a finished workdir: the loop had nothing left to train; evaluate.
        mesh = make_mesh()
        with jax.set_mesh(mesh):
            metrics = eval_fn(result.model, mesh, result.step)
    return {"step": result.step, **metrics}
