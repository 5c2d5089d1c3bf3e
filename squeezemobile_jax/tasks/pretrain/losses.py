"""What pretraining minimises and reports: masked-LM and NSP/SOP terms as sums over a batch,
the metrics made from them, and the loop's `Task` for a `PretrainingLoader`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from squeezemobile_jax.data import PretrainingLoader
from squeezemobile_jax.models import EncoderConfig, TaskOutput, with_layer_list
from squeezemobile_jax.models.flops import training_flops_per_example
from squeezemobile_jax.training import Task, summed_metrics

HEAD = "pretraining"


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
