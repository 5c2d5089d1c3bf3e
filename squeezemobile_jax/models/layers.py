"""Building blocks shared by the SqueezeBERT and MobileBERT families.

Layout is channels-last everywhere: activations are `[batch, seq, features]`.
Parameters are float32; each layer computes in the dtype it is given (`compute_dtype` of the
model config) while softmax and normalisation statistics stay in float32.

This module holds the normalisations, embeddings and pooler; the rest lives in `ops` (activations,
initialisers, dropout), `dense`, `attention` and `stacking`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from squeezemobile_jax.models.dense import Dense
from squeezemobile_jax.models.ops import Array, dropout, truncated_normal


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis with statistics in float32. scale, bias: [features]."""

    def __init__(self, features: int, eps: float):
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((features,)))
        self.bias = nnx.Param(jnp.zeros((features,)))

    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class NoNorm(nnx.Module):
    """MobileBERT's replacement for LayerNorm: an elementwise affine map, no statistics."""

    def __init__(self, features: int, eps: float = 0.0):
        del eps  # accepted for a uniform constructor; NoNorm has no epsilon
        self.scale = nnx.Param(jnp.ones((features,)))
        self.bias = nnx.Param(jnp.zeros((features,)))

    def __call__(self, x: Array) -> Array:
        return x * self.scale[...].astype(x.dtype) + self.bias[...].astype(x.dtype)


NORMS: dict[str, type[nnx.Module]] = {"layer_norm": LayerNorm, "no_norm": NoNorm}


class Embed(nnx.Module):
    """A lookup table. embedding: [num_embeddings, features]."""

    def __init__(self, num_embeddings: int, features: int, *, init_std: float, rngs: nnx.Rngs):
        shape = (num_embeddings, features)
        self.embedding = nnx.Param(truncated_normal(init_std)(rngs.params(), shape))

    def __call__(self, ids: Array, dtype: Any) -> Array:
        return jnp.take(self.embedding[...], ids, axis=0).astype(dtype)


class Pooler(nnx.Module):
    """Takes the first token; with `activate`, applies dense + tanh (BERT's pooler)."""

    def __init__(self, hidden_size: int, activate: bool, *, init_std: float, rngs: nnx.Rngs):
        self.dense = nnx.data(
            Dense(hidden_size, hidden_size, init_std=init_std, rngs=rngs) if activate else None
        )

    def __call__(self, sequence: Array) -> Array:
        first = sequence[:, 0]
        return first if self.dense is None else jnp.tanh(self.dense(first))


class Embeddings(nnx.Module):
    """Word + position + token-type embeddings, then a norm and dropout (both families).

    The word table is `[vocab, embedding_size]`. With `trigram_input` (MobileBERT), position t
    sees `[e[t+1], e[t], e[t-1]]` (zeros past the edges). A dense `embedding_transformation`
    maps the (trigram) vectors to `hidden_size` whenever trigram input is on or they are not
    `hidden_size` wide, as the original MobileBERT builds it. Output: [B, T, hidden].
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        max_position_embeddings: int,
        type_vocab_size: int,
        trigram_input: bool,
        norm: str,
        eps: float,
        dropout_rate: float,
        init_std: float,
        rngs: nnx.Rngs,
    ):
        self.trigram_input = trigram_input
        self.dropout_rate = dropout_rate
        self.word_embeddings = Embed(vocab_size, embedding_size, init_std=init_std, rngs=rngs)
        input_size = embedding_size * (3 if trigram_input else 1)
        self.embedding_transformation = nnx.data(
            Dense(input_size, hidden_size, init_std=init_std, rngs=rngs)
            if trigram_input or input_size != hidden_size
            else None
        )
        self.position_embeddings = Embed(
            max_position_embeddings, hidden_size, init_std=init_std, rngs=rngs
        )
        self.token_type_embeddings = Embed(
            type_vocab_size, hidden_size, init_std=init_std, rngs=rngs
        )
        self.norm = NORMS[norm](hidden_size, eps)

    def __call__(
        self,
        input_ids: Array,
        token_type_ids: Array,
        *,
        dtype: Any,
        dropout_rng: Array | None,
        deterministic: bool,
    ) -> Array:
        x = self.word_embeddings(input_ids, dtype)
        if self.trigram_input:
            nxt = jnp.pad(x[:, 1:], ((0, 0), (0, 1), (0, 0)))
            prev = jnp.pad(x[:, :-1], ((0, 0), (1, 0), (0, 0)))
            x = jnp.concatenate([nxt, x, prev], axis=-1)
        if self.embedding_transformation is not None:
            x = self.embedding_transformation(x)
        positions = jnp.arange(input_ids.shape[1])
        x = x + self.position_embeddings(positions, dtype)[None]
        x = x + self.token_type_embeddings(token_type_ids, dtype)
        return dropout(self.norm(x), self.dropout_rate, dropout_rng, deterministic)
