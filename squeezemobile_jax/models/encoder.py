"""The encoder skeleton both families share: embeddings -> stacked layers -> pooler."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from squeezemobile_jax.models.attention import attention_is_fused, kept_tokens_first, take_tokens
from squeezemobile_jax.models.config import EncoderConfig
from squeezemobile_jax.models.layers import Embeddings, Pooler
from squeezemobile_jax.models.ops import KeySplitter
from squeezemobile_jax.models.stacking import (
    EncoderOutput,
    LayerOutput,
    encoder_output,
    run_stacked_layers,
    unstack_layers,
)

Array = jax.Array


def embeddings_for(
    config: EncoderConfig, *, trigram_input: bool, norm: str, rngs: nnx.Rngs
) -> Embeddings:
    """The embedding block of `config`'s family (trigram input and norm type vary)."""
    return Embeddings(
        vocab_size=config.vocab_size,
        embedding_size=config.embedding_size,
        hidden_size=config.hidden_size,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        trigram_input=trigram_input,
        norm=norm,
        eps=config.layer_norm_eps,
        dropout_rate=config.hidden_dropout_prob,
        init_std=config.initializer_range,
        rngs=rngs,
    )


class Encoder(nnx.Module):
    """Base encoder. Subclasses set `config`, `embeddings`, `layers` (stacked) and `pooler`.
    `with_layer_list` makes a forward-only view whose `layers` is a list of per-layer modules.

    A layer is called as `layer(hidden, attention_mask, dropout_rng, deterministic=...,
    need_weights=...)` and returns a `LayerOutput`.
    """

    config: EncoderConfig
    embeddings: Embeddings
    layers: nnx.Module
    pooler: Pooler

    @property
    def dtype(self) -> Any:
        return jnp.dtype(self.config.compute_dtype)

    def __call__(
        self,
        input_ids: Array,
        attention_mask: Array | None = None,
        token_type_ids: Array | None = None,
        *,
        deterministic: bool = True,
        dropout_rng: Array | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        output_attention_scores: bool = False,
    ) -> EncoderOutput:
        """input_ids, attention_mask, token_type_ids: [B, T] integers. See `EncoderOutput`."""
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        keys = KeySplitter(None if deterministic else dropout_rng)
        hidden = self.embeddings(
            input_ids,
            token_type_ids,
            dtype=self.dtype,
            dropout_rng=keys(),
            deterministic=deterministic,
        )
        need_weights = output_attentions or output_attention_scores
        # The fused attention path masks keys by count, so the layers then see each row's kept
        # tokens first (right-padded rows stay as they are). Every other operation of a layer
        # acts per token and attention does not depend on key order, so reordering the tokens
        # and putting the outputs back is exact; hidden dropout draws its masks by position.
        order = None
        if attention_mask is not None and attention_is_fused(
            need_weights=need_weights,
            dropout_rate=self.config.attention_probs_dropout_prob,
            deterministic=deterministic,
        ):
            order = kept_tokens_first(attention_mask)
            attention_mask = take_tokens(attention_mask, order)

        def call_layer(layer: nnx.Module, h: Array, key: Array | None) -> LayerOutput:
            return layer(
                h, attention_mask, key, deterministic=deterministic, need_weights=need_weights
            )

        final, per_layer = run_stacked_layers(
            self.layers,
            hidden if order is None else take_tokens(hidden, order),
            call_layer,
            num_layers=self.config.num_hidden_layers,
            dropout_rng=keys(),
            scan=self.config.scan_layers,
            remat=self.config.remat,
        )
        if order is not None:
            restore = jnp.argsort(order, axis=1)
            final = take_tokens(final, restore)
            if output_hidden_states:  # [L, B, T, H]
                per_layer = per_layer.replace(hidden=take_tokens(per_layer.hidden, restore, 2))
        return encoder_output(
            hidden,
            final,
            per_layer,
            self.pooler,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            output_attention_scores=output_attention_scores,
        )


def with_layer_list(model: nnx.Module) -> nnx.Module:
    """A view of `model` for forward-only programs (prediction, evaluation): each encoder in it
    that runs its layers unrolled holds them as a list of per-layer modules.

    Compiled over stacked parameters, an unrolled forward pass copies every layer's weights
    out of the stacks on every call (XLA slices are copies), about 15% of SqueezeBERT's and
    BERT-base's batch-1 latency on a CPU. The view holds those slices as parameters of their
    own, made once; everything else is shared with `model`, which is left as it is. The view
    computes exactly what `model` computes. Encoders that scan keep their stacks.
    """
    view = nnx.merge(*nnx.split(model))  # new module objects over the same arrays
    encoders = [
        node
        for _, node in nnx.iter_graph(view)
        if isinstance(node, Encoder) and not node.config.scan_layers
    ]
    for encoder in encoders:
        if not isinstance(encoder.layers, nnx.List):
            encoder.layers = unstack_layers(encoder.layers)
    return view
