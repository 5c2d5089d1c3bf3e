"""Scaled dot-product attention shared by both families: the explicit path (maps, dropout, the
CPU) and `jax.nn.dot_product_attention` (accelerators).
"""

from __future__ import annotations

import functools
import logging
import math

import jax
import jax.numpy as jnp

from squeezemobile_jax import cpu_tuning
from squeezemobile_jax.models.ops import Array, dropout

log = logging.getLogger(__name__)

MASK_VALUE = float(jnp.finfo(jnp.float32).min)  # large finite negative for masked keys


def split_heads(x: Array, num_heads: int) -> Array:
    """[B, T, N*D] -> [B, T, N, D] (channel c = head * D + d, as BERT)."""
    return x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)


def attention_is_fused(*, need_weights: bool, dropout_rate: float, deterministic: bool) -> bool:
    """Whether `attention` takes the `fused_attention` path: no maps asked for, no attention
    dropout (the fused kernels have none) and an accelerator backend
    (`cpu_tuning.use_fused_attention`)."""
    use_dropout = not deterministic and dropout_rate > 0.0
    return not need_weights and not use_dropout and cpu_tuning.use_fused_attention()


def kept_tokens_first(attention_mask: Array) -> Array:
    """The per-row token order [B, T] that puts the kept tokens (mask 1) first, each group in
    its original order. A right-padded mask gives the identity."""
    return jnp.argsort(attention_mask == 0, axis=1, stable=True)


def take_tokens(x: Array, order: Array, axis: int = 1) -> Array:
    """Reorders the token axis `axis` of x ([..., B, T, ...], B at axis - 1) by order [B, T]."""
    index = order.reshape((1,) * (axis - 1) + order.shape + (1,) * (x.ndim - axis - 1))
    return jnp.take_along_axis(x, index, axis=axis)


@functools.cache
def _warn_unfused(reason: str) -> None:
    log.warning("cuDNN fused attention unavailable (%s); using XLA's attention", reason)


def fused_attention(query: Array, key: Array, value: Array, attention_mask: Array | None) -> Array:
    """`jax.nn.dot_product_attention` over [B, T, N, D] inputs; returns [B, T, N, Dv].

    The mask is passed as key lengths (cuDNN's padding mask), so every row's kept tokens
    must come first (the encoder orders tokens with `kept_tokens_first` on this path); a row
    with no kept token attends to its first. On CUDA GPUs 16-bit inputs run cuDNN's flash
    attention kernels (`implementation=None` would pick XLA's unfused attention); float32,
    other accelerators and unsupported shapes (cuDNN: head dim a multiple of 8, at most 128,
    or 256 from Hopper on) run XLA's.
    """
    lengths = None
    if attention_mask is not None:
        lengths = jnp.maximum(jnp.sum(attention_mask != 0, axis=1, dtype=jnp.int32), 1)
    attend = functools.partial(
        jax.nn.dot_product_attention, query, key, value, key_value_seq_lengths=lengths
    )
    if jax.default_backend() == "gpu" and query.dtype in (jnp.bfloat16, jnp.float16):
        try:
            return attend(implementation="cudnn")
        except (NotImplementedError, RuntimeError) as err:  # no cuDNN; shape or GPU unsupported
            _warn_unfused(str(err))
    return attend(implementation="xla")


def attention(
    query: Array,
    key: Array,
    value: Array,
    attention_mask: Array | None,
    *,
    dropout_rate: float,
    dropout_rng: Array | None,
    deterministic: bool,
    need_weights: bool,
) -> tuple[Array, Array | None, Array | None]:
    """Scaled dot-product attention over keys, shared by both families.

    Args:
      query, key, value: [B, T, N, D] (value may have its own D).
      attention_mask: [B, T] with 1 for real tokens and 0 for padding, or None.
      need_weights: also return the probabilities and the masked pre-softmax scores.
    Returns:
      context [B, T, N*Dv], probabilities [B, N, T, T] or None, scores [B, N, T, T] or None.
      Without weights and without attention dropout, accelerators use `fused_attention`
      (which needs each row's kept tokens first); XLA:CPU has no fused kernel, and the
      explicit path below is faster there.
    """
    b, t, n, d = query.shape
    if attention_is_fused(
        need_weights=need_weights, dropout_rate=dropout_rate, deterministic=deterministic
    ):
        return fused_attention(query, key, value, attention_mask).reshape(b, t, -1), None, None
    # Heads-major [B, N, T, D]: the batched matmuls then have leading batch dimensions, which
    # XLA:CPU runs about 1.5x faster than contracting [B, T, N, D] in place.
    query, key, value = (x.transpose(0, 2, 1, 3) for x in (query, key, value))
    scores = jnp.einsum("bnqd,bnkd->bnqk", query, key, preferred_element_type=jnp.float32) * (
        1.0 / math.sqrt(d)
    )
    if attention_mask is not None:
        scores = scores + (1.0 - attention_mask[:, None, None, :].astype(jnp.float32)) * MASK_VALUE
    probs = jax.nn.softmax(scores, axis=-1)
    dropped = dropout(probs, dropout_rate, dropout_rng, deterministic)
    context = jnp.einsum("bnqk,bnkd->bnqd", dropped.astype(value.dtype), value)
    return context.transpose(0, 2, 1, 3).reshape(b, t, -1), probs, scores
