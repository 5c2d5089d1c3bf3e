"""One SQuAD fine-tuning run (see the package docstring)."""

from __future__ import annotations

import logging
import math
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from squeezemobile_jax.data.batching import EpochBatches
from squeezemobile_jax.data.tokenizer import WordPieceTokenizer
from squeezemobile_jax.models import PRESETS, build_model
from squeezemobile_jax.tasks.common import (
    is_hf_directory,
    is_workdir,
    load_pretrained,
    model_config_from_section,
    num_params,
    tokenizer_of,
    workdir_tokenizer,
    write_model_spec,
)
from squeezemobile_jax.tasks.squad.examples import load_split
from squeezemobile_jax.tasks.squad.features import FeatureOptions, build_features
from squeezemobile_jax.tasks.squad.losses import qa_loss
from squeezemobile_jax.tasks.squad.postprocess import PostprocessOptions
from squeezemobile_jax.tasks.squad.predict import make_eval_fn
from squeezemobile_jax.training import (
    Task,
    make_mesh,
    maybe_initialize_distributed,
    train_and_evaluate,
)

log = logging.getLogger(__name__)

HEAD = "question_answering"
VERSIONS = ("1.1", "2.0")


def check_version(version: Any) -> bool:
    """True for SQuAD 2.0, False for 1.1; anything else is an error."""
    version = str(version)
    if version not in VERSIONS:
        raise ValueError(f"config.version={version!r}: choose one of {VERSIONS}")
    return version == "2.0"


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
    tokenizer = workdir_tokenizer(
        workdir, lambda: tokenizer_of(init, config.get("tokenizer", {}).get("path") or None)
    )
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
