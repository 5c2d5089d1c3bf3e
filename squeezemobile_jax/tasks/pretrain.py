"""MLM + NSP/SOP pretraining (`config.task = "pretrain"`).

Config sections beyond `training_defaults()`:
  model      `model_section(preset, ...)`; vocab_size defaults to the tokenizer's.
  tokenizer  path: a vocab.txt / tokenizer.json / directory, or "" to train a WordPiece
             vocabulary of `vocab_size` on the corpus. A run reuses `workdir/tokenizer`.
  data       `PretrainingLoader` arguments (corpus, max_seq_length, max_predictions_per_seq,
             masked_lm_prob, short_seq_prob, task 'nsp'|'sop', whole_word_masking,
             global_batch_size, eval_documents, eval_batch_size, ...).
  phases     optional list of {num_steps, and data fields such as max_seq_length,
             global_batch_size, max_predictions_per_seq}: run one after another in the same
             workdir (e.g. 56k steps at length 128, then 6k at 512). Without phases the run is
             one phase of `train.num_steps`. The learning-rate schedule spans all phases.
  init       optional workdir or HF directory to start from (continued pretraining).
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from ml_collections import config_dict

from squeezemobile_jax import fileio
from squeezemobile_jax.data import (
    PretrainingLoader,
    WordPieceTokenizer,
    load_tokenizer,
    save_tokenizer,
    trained_tokenizer,
)
from squeezemobile_jax.models import EncoderConfig, TaskOutput, build_model, with_layer_list
from squeezemobile_jax.models.flops import training_flops_per_example
from squeezemobile_jax.tasks.common import (
    CHECKPOINT_DIR,
    load_pretrained,
    model_config_from_section,
    model_section,
    write_model_spec,
)
from squeezemobile_jax.training import (
    Task,
    TrainResult,
    maybe_initialize_distributed,
    summed_metrics,
    train_and_evaluate,
    training_defaults,
)
from squeezemobile_jax.training.checkpoint import Checkpointer

log = logging.getLogger(__name__)

HEAD = "pretraining"
TOKENIZER_DIR = "tokenizer"
PHASE_DATA_FIELDS = (
    "max_seq_length",
    "global_batch_size",
    "max_predictions_per_seq",
    "eval_batch_size",
)


# ----------------------------------------------------------------------------- losses
def masked_lm_terms(logits: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Weighted sums for MLM. logits [B, P, V] at masked_lm_positions; ids, weights [B, P]."""
    weights = batch["masked_lm_weights"].astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["masked_lm_ids"])
    correct = (jnp.argmax(logits, -1) == batch["masked_lm_ids"]).astype(jnp.float32)
    return {
        "mlm_nll": jnp.sum(nll * weights),
        "mlm_correct": jnp.sum(correct * weights),
        "mlm_count": jnp.sum(weights),
    }


def next_sentence_terms(
    logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None
) -> dict[str, jax.Array]:
    """Sums for NSP/SOP. logits [B, 2], labels [B], weights [B] (1 = real row)."""
    weights = jnp.ones(labels.shape, jnp.float32) if weights is None else weights
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return {
        "nsp_nll": jnp.sum(nll * weights),
        "nsp_correct": jnp.sum(correct * weights),
        "nsp_count": jnp.sum(weights),
    }


def pretraining_metrics(sums: Mapping[str, Any]) -> dict[str, Any]:
    """Means from summed terms: mlm_loss, mlm_accuracy, nsp_loss, nsp_accuracy, loss."""
    mlm_n = jnp.maximum(sums["mlm_count"], 1.0)
    nsp_n = jnp.maximum(sums["nsp_count"], 1.0)
    out = {
        "mlm_loss": sums["mlm_nll"] / mlm_n,
        "mlm_accuracy": sums["mlm_correct"] / mlm_n,
        "nsp_loss": sums["nsp_nll"] / nsp_n,
        "nsp_accuracy": sums["nsp_correct"] / nsp_n,
    }
    out["loss"] = out["mlm_loss"] + out["nsp_loss"]
    return out


def pretraining_forward(
    model: nnx.Module, batch: Mapping[str, jax.Array], rng: jax.Array | None
) -> TaskOutput:
    """The pretraining model on a batch; dropout on when `rng` is given."""
    return model(
        batch["input_ids"],
        batch["attention_mask"],
        batch["token_type_ids"],
        masked_lm_positions=batch["masked_lm_positions"],
        deterministic=rng is None,
        dropout_rng=rng,
    )


def pretraining_loss(
    model: nnx.Module, batch: Mapping[str, jax.Array], rng: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean MLM cross-entropy over masked tokens + mean NSP/SOP cross-entropy."""
    out = pretraining_forward(model, batch, rng)
    sums = {
        **masked_lm_terms(out.prediction_logits, batch),
        **next_sentence_terms(out.seq_relationship_logits, batch["next_sentence_labels"]),
    }
    metrics = pretraining_metrics(sums)
    return metrics["loss"], metrics


def _eval_sums(model: nnx.Module, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    out = pretraining_forward(model, batch, None)
    return {
        **masked_lm_terms(out.prediction_logits, batch),
        **next_sentence_terms(out.seq_relationship_logits, batch["next_sentence_labels"]),
    }


_evaluate = summed_metrics(_eval_sums)


def make_task(loader: PretrainingLoader, model_config: EncoderConfig) -> Task:
    """The loop's view of pretraining on `loader`'s batches."""
    seq, preds = loader.options.max_seq_length, loader.options.max_predictions_per_seq

    def eval_fn(model: nnx.Module, mesh: jax.sharding.Mesh, step: int) -> dict[str, float]:
        sums = _evaluate(with_layer_list(model), loader.eval_batches(), mesh)
        return {k: float(v) for k, v in pretraining_metrics(sums).items()} if sums else {}

    return Task(
        loss_fn=pretraining_loss,
        eval_fn=eval_fn if loader.num_eval_batches else None,
        count_fn=lambda b: {
            "examples": float(len(b["input_ids"])),
            "tokens": float(b["input_ids"].size),
        },
        flops_per_example=training_flops_per_example(model_config, seq, preds),
    )


# ----------------------------------------------------------------------------- set-up
def corpus_section(**fields: Any) -> ml_collections.ConfigDict:
    """A `config.data.corpus` section with every `CorpusSpec` field (built-in by default), so
    each can be set from the command line, e.g. `--config.data.corpus.kind=text`."""
    section = ml_collections.ConfigDict(
        {
            "kind": "builtin",
            "paths": (),
            "name": config_dict.placeholder(str),
            "config": config_dict.placeholder(str),
            "split": "train",
            "text_column": "text",
            "data_files": (),
            "rows": "documents",
            "sentence_split": "lines",
            "encoding_errors": "strict",
            "hf_cache_dir": config_dict.placeholder(str),
        }
    )
    section.update(fields)
    return section


def default_config() -> ml_collections.ConfigDict:
    """Every field a pretraining config has; experiment files in configs/ change some."""
    c = training_defaults()
    c.task = "pretrain"
    c.workdir = ""  # default for --workdir
    c.init = ""  # workdir or HF directory to continue from
    c.model = model_section("mobilebert-test")
    c.tokenizer = ml_collections.ConfigDict({"path": "", "vocab_size": 8192})
    c.data = ml_collections.ConfigDict(
        {
            "corpus": corpus_section(),
            "max_seq_length": 128,
            "max_predictions_per_seq": 20,
            "masked_lm_prob": 0.15,
            "short_seq_prob": 0.1,
            "task": "nsp",
            "whole_word_masking": False,
            "global_batch_size": 256,
            "eval_documents": 0,
            "eval_batch_size": config_dict.placeholder(int),
            "cache_dir": config_dict.placeholder(str),
            "num_proc": 1,
            "num_workers": 0,
        }
    )
    c.phases = ()
    return c


def use_mobilebert_recipe(c: ml_collections.ConfigDict, global_batch_size: int) -> None:
    """Sets MobileBERT's pretraining data and LAMB settings on config `c` in place.

    English Wikipedia, NSP, sequences of 512 with 20 masked positions, 2000 held-out documents,
    batches made by 8 worker processes per host, FSDP, LAMB 1.5e-3 with 10k warmup decaying to
    1e-4 of the peak. The teacher config and the distillation configs share it, so the
    distilled student holds out the teacher's documents.
    """
    c.data.corpus = corpus_section(
        kind="hf", name="wikimedia/wikipedia", config="20231101.en", sentence_split="punctuation"
    )
    c.data.task = "nsp"
    c.data.max_seq_length = 512
    c.data.max_predictions_per_seq = 20
    c.data.global_batch_size = global_batch_size
    c.data.eval_documents = 2000
    c.data.eval_batch_size = 512
    c.data.num_proc = 16
    c.data.num_workers = 8
    c.train.log_every = 100
    c.train.eval_every = 10_000
    c.checkpoint.every_steps = 2000
    c.mesh.fsdp = True
    c.optimizer.name = "lamb"
    c.optimizer.learning_rate = 1.5e-3
    c.optimizer.schedule.warmup_steps = 10_000
    c.optimizer.schedule.end_ratio = 1e-4
    c.optimizer.stacked_params = (("/layers/", 1),)


def build_tokenizer(config: ml_collections.ConfigDict, workdir: str) -> WordPieceTokenizer:
    """The run's tokenizer: the one saved in the workdir, else the configured or trained one."""
    saved = fileio.join(workdir, TOKENIZER_DIR)
    if fileio.exists(saved):
        return load_tokenizer(fileio.local_dir(saved))
    tok_cfg = config.tokenizer
    init_tokenizer = fileio.join(config.init, TOKENIZER_DIR) if config.get("init") else None
    if tok_cfg.get("path"):
        tokenizer = load_tokenizer(tok_cfg.path)
    elif init_tokenizer and fileio.exists(init_tokenizer):
        tokenizer = load_tokenizer(fileio.local_dir(init_tokenizer))
    else:
        tokenizer = trained_tokenizer(
            config.data.corpus, int(tok_cfg.vocab_size), cache_dir=config.data.get("cache_dir")
        )
    if jax.process_index() == 0:
        if fileio.is_remote(workdir):
            with tempfile.TemporaryDirectory() as tmp:
                fileio.upload_dir(save_tokenizer(tokenizer, tmp, TOKENIZER_DIR), saved)
        else:
            save_tokenizer(tokenizer, workdir, TOKENIZER_DIR)
    return tokenizer


def phase_plan(config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
    """[{end_step, num_steps, data overrides}] for each phase, cumulative end steps."""
    phases = config.get("phases") or [{"num_steps": config.train.num_steps}]
    plan, end = [], 0
    for i, phase in enumerate(phases):
        phase = dict(phase)
        steps = phase.pop("num_steps", None)
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"config.phases[{i}].num_steps must be a positive integer")
        unknown = sorted(set(phase) - set(PHASE_DATA_FIELDS))
        if unknown:
            raise ValueError(
                f"config.phases[{i}]: unknown field(s) {unknown}; allowed: num_steps, "
                f"{', '.join(PHASE_DATA_FIELDS)}"
            )
        end += steps
        plan.append({"start": end - steps, "end": end, "data": phase})
    return plan


def _latest_step(workdir: str) -> int:
    ckpt_dir = fileio.join(workdir, CHECKPOINT_DIR)
    if not fileio.exists(ckpt_dir):
        return 0
    ckpt = Checkpointer(ckpt_dir, max_to_keep=None, async_save=False)
    try:
        return ckpt.latest_step() or 0
    finally:
        ckpt.close()


def build_pretraining_model(config: ml_collections.ConfigDict, vocab_size: int) -> nnx.Module:
    """The model to train: from `config.init` when given, else fresh from `config.model`."""
    if config.get("init"):
        return load_pretrained(config.init, HEAD, seed=config.seed)
    model_config = model_config_from_section(config.model, vocab_size=vocab_size)
    return build_model(model_config, HEAD, seed=config.seed)


def run(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
    """Pretrains in `workdir`, phase after phase; resumes from the newest checkpoint."""
    maybe_initialize_distributed(config)
    tokenizer = build_tokenizer(config, workdir)
    plan = phase_plan(config)
    total_steps = plan[-1]["end"]
    done = _latest_step(workdir)
    result = None
    for i, phase in enumerate(plan):
        if done >= phase["end"] and i < len(plan) - 1:
            continue
        phase_config = copy.deepcopy(config)
        with phase_config.unlocked():
            phase_config.train.num_steps = phase["end"]
            if not phase_config.optimizer.schedule.get("decay_steps"):
                phase_config.optimizer.schedule.decay_steps = total_steps
            for key, value in phase["data"].items():
                phase_config.data[key] = value
        loader = PretrainingLoader.from_config(
            phase_config.data,
            tokenizer=tokenizer,
            seed=int(config.seed),
            show_progress=jax.process_index() == 0,
        )
        model = build_pretraining_model(config, tokenizer.vocab_size)
        write_model_spec(workdir, model.config, HEAD)
        log.info(
            "Phase %d/%d: steps %d-%d, length %d, global batch %d",
            i + 1,
            len(plan),
            phase["start"],
            phase["end"],
            loader.options.max_seq_length,
            loader.global_batch_size,
        )
        start = phase["start"]
        result = train_and_evaluate(
            phase_config,
            workdir,
            make_task(loader, model.config),
            model,
            lambda step, loader=loader, start=start: loader.iterator(step - start),
        )
        if result.preempted:
            break
    return result
