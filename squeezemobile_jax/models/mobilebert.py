"""The MobileBERT family (Sun et al., 2020): IB-BERT_LARGE, MobileBERT and MobileBERT_TINY.

One block, configured by flags, as the original TensorFlow code builds it:

    a = Norm(Dense(x))                                  bottleneck/input (residual of attention)
    Q, K, V inputs:  key_query_shared_bottleneck -> s = Norm(Dense(x)); Q, K from s, V from x
                     use_bottleneck_attention    -> Q, K, V from a
                     neither (IB-BERT teacher)   -> Q, K, V from x (hidden_size wide)
    h = Norm(Dense(attention) + a)
    h = FFN_k(h) for k in 1..num_feedforward_networks (each Norm(Dense(act(Dense(h))) + h))
    y = Norm(Dense(h) + x)                              output/bottleneck back to hidden_size

Without `use_bottleneck` the block is a BERT layer (with dropout after both projections).
The teacher case differs from HF's PyTorch class, which feeds x into bottleneck-sized Q/K
projections and so cannot build IB-BERT.
"""

from __future__ import annotations

import jax
from flax import nnx

from squeezemobile_jax.models.attention import attention, split_heads
from squeezemobile_jax.models.config import MobileBertConfig
from squeezemobile_jax.models.dense import Dense, project_together
from squeezemobile_jax.models.encoder import Encoder, embeddings_for
from squeezemobile_jax.models.layers import NORMS, Pooler
from squeezemobile_jax.models.ops import KeySplitter, activation, dropout
from squeezemobile_jax.models.stacking import LayerOutput, stack_layers

Array = jax.Array


class FeedForward(nnx.Module):
    """y = Norm(dropout(Dense(act(Dense(x)))) + x); x, y: [B, T, width]."""

    def __init__(
        self, config: MobileBertConfig, width: int, dropout_rate: float, *, rngs: nnx.Rngs
    ):
        std = config.initializer_range
        self.act = config.hidden_act
        self.dropout_rate = dropout_rate
        self.intermediate = Dense(width, config.intermediate_size, init_std=std, rngs=rngs)
        self.output = Dense(config.intermediate_size, width, init_std=std, rngs=rngs)
        self.norm = NORMS[config.normalization_type](width, config.layer_norm_eps)

    def __call__(self, x: Array, dropout_rng: Array | None, deterministic: bool) -> Array:
        y = self.output(activation(self.act)(self.intermediate(x)))
        return self.norm(dropout(y, self.dropout_rate, dropout_rng, deterministic) + x)


class MobileBertLayer(nnx.Module):
    """One MobileBERT / IB-BERT block (see the module docstring). x, y: [B, T, hidden_size]."""

    def __init__(self, config: MobileBertConfig, *, rngs: nnx.Rngs):
        std, eps = config.initializer_range, config.layer_norm_eps
        norm = NORMS[config.normalization_type]
        hidden, inner = config.hidden_size, config.true_hidden_size
        qk_in, v_in = config.attention_input_sizes
        self.num_heads = config.num_attention_heads
        self.use_bottleneck = config.use_bottleneck
        self.use_bottleneck_attention = config.use_bottleneck_attention
        self.key_query_shared_bottleneck = config.key_query_shared_bottleneck
        self.hidden_dropout = config.hidden_dropout_prob
        self.attention_dropout = config.attention_probs_dropout_prob

        def optional(flag: bool, make):
            return nnx.data(make() if flag else None)

        bottleneck, shared = config.use_bottleneck, config.key_query_shared_bottleneck
        self.bottleneck_input = optional(
            bottleneck, lambda: Dense(hidden, inner, init_std=std, rngs=rngs)
        )
        self.bottleneck_input_norm = optional(bottleneck, lambda: norm(inner, eps))
        self.bottleneck_attention = optional(
            shared, lambda: Dense(hidden, inner, init_std=std, rngs=rngs)
        )
        self.bottleneck_attention_norm = optional(shared, lambda: norm(inner, eps))
        self.output_bottleneck = optional(
            bottleneck, lambda: Dense(inner, hidden, init_std=std, rngs=rngs)
        )
        self.output_bottleneck_norm = optional(bottleneck, lambda: norm(hidden, eps))
        self.query = Dense(qk_in, inner, init_std=std, rngs=rngs)
        self.key = Dense(qk_in, inner, init_std=std, rngs=rngs)
        self.value = Dense(v_in, inner, init_std=std, rngs=rngs)
        self.attention_output = Dense(inner, inner, init_std=std, rngs=rngs)
        self.attention_output_norm = norm(inner, eps)
        # Stacked FFNs; only the last one of a non-bottleneck (BERT-like) block has dropout.
        last_dropout = 0.0 if config.use_bottleneck else config.hidden_dropout_prob
        self.ffn = nnx.List(
            [
                FeedForward(
                    config,
                    inner,
                    last_dropout if k == config.num_feedforward_networks - 1 else 0.0,
                    rngs=rngs,
                )
                for k in range(config.num_feedforward_networks)
            ]
        )

    def __call__(
        self,
        x: Array,
        attention_mask: Array | None,
        dropout_rng: Array | None,
        *,
        deterministic: bool,
        need_weights: bool,
    ) -> LayerOutput:
        keys = KeySplitter(dropout_rng)
        v = None  # projected with Q and K, unless it reads another input
        if not self.use_bottleneck:
            layer_input = qk_input = x
        elif self.key_query_shared_bottleneck and not self.use_bottleneck_attention:
            # V reads x, as both bottlenecks do: one matmul for the three.
            layer_input, qk_input, v = project_together(
                x, self.bottleneck_input, self.bottleneck_attention, self.value
            )
            layer_input = self.bottleneck_input_norm(layer_input)
            qk_input = self.bottleneck_attention_norm(qk_input)
        else:
            layer_input = self.bottleneck_input_norm(self.bottleneck_input(x))
            qk_input = layer_input if self.use_bottleneck_attention else x
        if v is None:
            q, k, v = project_together(qk_input, self.query, self.key, self.value)
        else:
            q, k = project_together(qk_input, self.query, self.key)
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
        h = self.attention_output(context)
        if not self.use_bottleneck:
            h = dropout(h, self.hidden_dropout, keys(), deterministic)
        h = self.attention_output_norm(h + layer_input)
        for ffn in self.ffn:
            h = ffn(h, keys(), deterministic)
        if self.use_bottleneck:
            y = dropout(self.output_bottleneck(h), self.hidden_dropout, keys(), deterministic)
            h = self.output_bottleneck_norm(y + x)
        return LayerOutput(h, probs, scores)


class MobileBertModel(Encoder):
    """MobileBERT-family trunk: (trigram) embeddings, stacked blocks, optional tanh pooler."""

    def __init__(self, config: MobileBertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = embeddings_for(
            config, trigram_input=config.trigram_input, norm=config.normalization_type, rngs=rngs
        )
        self.layers = stack_layers(
            lambda r: MobileBertLayer(config, rngs=r), config.num_hidden_layers, rngs
        )
        self.pooler = Pooler(
            config.hidden_size,
            config.classifier_activation,
            init_std=config.initializer_range,
            rngs=rngs,
        )
