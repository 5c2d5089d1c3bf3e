"""The fine-tuning loss: cross-entropy or squared error, optionally mixed with a teacher's."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from squeezemobile_jax.tasks.glue.encoding import MODEL_INPUTS


def soft_cross_entropy(student: jax.Array, teacher: jax.Array, temperature: float) -> jax.Array:
    """Per-example T^2 * H(softmax(teacher / T), softmax(student / T)). [B, C] -> [B]."""
    target = jax.nn.softmax(teacher / temperature, axis=-1)
    log_probs = jax.nn.log_softmax(student / temperature, axis=-1)
    return -(temperature**2) * jnp.sum(target * log_probs, axis=-1)


def finetune_loss(
    logits: jax.Array,
    batch: Mapping[str, jax.Array],
    *,
    regression: bool,
    distill_weight: float = 0.0,
    temperature: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean loss over the batch and scalar metrics. logits [B, C] (C = 1 for regression).

    Classification: cross-entropy to `labels` [B] (int); regression: squared error to
    `labels` [B] (float). With `teacher_logits` [B, C] in the batch and distill_weight w > 0:
    (1 - w) * that + w * (soft cross-entropy at `temperature`, or squared error to the
    teacher's score for regression).
    """
    logits = logits.astype(jnp.float32)
    labels = batch["labels"]
    if regression:
        hard = jnp.mean(jnp.square(logits[:, 0] - labels.astype(jnp.float32)))
        metrics = {"mse": hard}
    else:
        hard = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
        accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
        metrics = {"cross_entropy": hard, "accuracy": accuracy}
    if "teacher_logits" not in batch or distill_weight <= 0.0:
        return hard, metrics
    teacher = batch["teacher_logits"].astype(jnp.float32)
    if regression:
        soft = jnp.mean(jnp.square(logits - teacher))
    else:
        soft = jnp.mean(soft_cross_entropy(logits, teacher, temperature))
    metrics["distill_loss"] = soft
    return (1.0 - distill_weight) * hard + distill_weight * soft, metrics


def make_loss_fn(regression: bool, distill_weight: float, temperature: float):
    """`loss_fn(model, batch, rng)` for the loop (dropout on, drawn from `rng`)."""

    def loss_fn(model: nnx.Module, batch: Mapping[str, jax.Array], rng: jax.Array):
        out = model(*(batch[k] for k in MODEL_INPUTS), deterministic=False, dropout_rng=rng)
        return finetune_loss(
            out.logits,
            batch,
            regression=regression,
            distill_weight=distill_weight,
            temperature=temperature,
        )

    return loss_fn
