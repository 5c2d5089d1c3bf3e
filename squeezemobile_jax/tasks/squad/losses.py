"""The span loss of question answering.

Loss: the mean over the batch of (cross-entropy of the start position + cross-entropy of the
end position) / 2, over all T positions of start_logits / end_logits [B, T].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


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


def qa_forward(model: nnx.Module, batch: Mapping[str, jax.Array], **kwargs: Any):
    """The QA model on a batch of features (input_ids, attention_mask, token_type_ids [B, T])."""
    return model(
        batch["input_ids"],
        batch["attention_mask"].astype(jnp.int32),
        batch["token_type_ids"].astype(jnp.int32),
        **kwargs,
    )


def qa_loss(model: nnx.Module, batch: Mapping[str, jax.Array], rng: jax.Array):
    """The loop's loss_fn: span loss with dropout from `rng`; aux: start/end accuracy."""
    out = qa_forward(model, batch, deterministic=False, dropout_rng=rng)
    loss = span_loss(
        out.start_logits, out.end_logits, batch["start_positions"], batch["end_positions"]
    )
    aux = {
        "start_accuracy": jnp.mean(jnp.argmax(out.start_logits, -1) == batch["start_positions"]),
        "end_accuracy": jnp.mean(jnp.argmax(out.end_logits, -1) == batch["end_positions"]),
    }
    return loss, aux
