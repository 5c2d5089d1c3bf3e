"""SqueezeBERT (Iandola et al., 2020): BERT with grouped 1x1 convolutions.

Each grouped convolution is a `GroupedDense` (one einsum over `[B, T, G, C/G]`); there is no
`[B, C, T]` layout. With every group count 1 this is exactly BERT-base.
"""

from __future__ import annotations

import jax
from flax import nnx

from squeezemobile_jax.models.attention import attention, split_heads
from squeezemobile_jax.models.config import SqueezeBertConfig
from squeezemobile_jax.models.dense import GroupedDense, grouped_feed_forward, project_together
from squeezemobile_jax.models.encoder import Encoder, embeddings_for
from squeezemobile_jax.models.layers import LayerNorm, Pooler
from squeezemobile_jax.models.ops import KeySplitter, activation, dropout
from squeezemobile_jax.models.stacking import LayerOutput, stack_layers

Array = jax.Array


class SqueezeBertLayer(nnx.Module):
    """Self-attention (no output projection) -> post_attention conv + LN -> grouped FFN + LN."""

    def __init__(self, config: SqueezeBertConfig, *, rngs: nnx.Rngs):
        h, i, std = config.hidden_size, config.intermediate_size, config.initializer_range
        self.num_heads = config.num_attention_heads
        self.hidden_dropout = config.hidden_dropout_prob
        self.attention_dropout = config.attention_probs_dropout_prob
        self.act = config.hidden_act
        self.query = GroupedDense(h, h, config.q_groups, init_std=std, rngs=rngs)
        self.key = GroupedDense(h, h, config.k_groups, init_std=std, rngs=rngs)
        self.value = GroupedDense(h, h, config.v_groups, init_std=std, rngs=rngs)
        self.post_attention = GroupedDense(
            h, h, config.post_attention_groups, init_std=std, rngs=rngs
        )
        self.post_attention_norm = LayerNorm(h, config.layer_norm_eps)
        self.intermediate = GroupedDense(h, i, config.intermediate_groups, init_std=std, rngs=rngs)
        self.output = GroupedDense(i, h, config.output_groups, init_std=std, rngs=rngs)
        self.output_norm = LayerNorm(h, config.layer_norm_eps)

    def __call__(
        self,
        x: Array,
        attention_mask: Array | None,
        dropout_rng: Array | None,
        *,
        deterministic: bool,
        need_weights: bool,
    ) -> LayerOutput:
        """x: [B, T, H]; attention_mask: [B, T] or None."""
        keys = KeySplitter(dropout_rng)
        q, k, v = project_together(x, self.query, self.key, self.value)
        context, probs, scores = attention(
            split_heads(q, self.num_heads),
            split_heads(k, self.num_heads),
            split_heads(v, self.num_heads),
            attention_mask,
            dropout_rate=self.attention_dropout,
            dropout_rng=keys(),
            deterministic=deterministic,
            need_weights=need_weights,
        )
        post = self.post_attention(context)
        post = self.post_attention_norm(
            dropout(post, self.hidden_dropout, keys(), deterministic) + x
        )
        out = grouped_feed_forward(post, self.intermediate, self.output, activation(self.act))
        out = dropout(out, self.hidden_dropout, keys(), deterministic)
        return LayerOutput(self.output_norm(out + post), probs, scores)


class SqueezeBertModel(Encoder):
    """SqueezeBERT trunk: embeddings, `num_hidden_layers` stacked layers, tanh pooler."""

    def __init__(self, config: SqueezeBertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = embeddings_for(config, trigram_input=False, norm="layer_norm", rngs=rngs)
        self.layers = stack_layers(
            lambda r: SqueezeBertLayer(config, rngs=r), config.num_hidden_layers, rngs
        )
        self.pooler = Pooler(config.hidden_size, True, init_std=config.initializer_range, rngs=rngs)
