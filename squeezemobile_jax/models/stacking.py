"""Layer stacks: parameters stacked for `jax.lax.scan` or run as a list; the encoder's outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from squeezemobile_jax.models.layers import Pooler
from squeezemobile_jax.models.ops import Array


@flax.struct.dataclass
class EncoderOutput:
    """What an encoder returns. Per-layer outputs are stacked on a leading layer axis.

    last_hidden_state: [B, T, H]; pooler_output: [B, H];
    hidden_states: [L+1, B, T, H] (embedding output, then every layer) or None;
    attentions: [L, B, N, T, T] probabilities or None;
    attention_scores: [L, B, N, T, T] masked pre-softmax scores or None.
    """

    last_hidden_state: Array
    pooler_output: Array
    hidden_states: Array | None = None
    attentions: Array | None = None
    attention_scores: Array | None = None


@flax.struct.dataclass
class LayerOutput:
    """One layer's result: hidden [B, T, H]; probs, scores [B, N, T, T] or None."""

    hidden: Array
    probs: Array | None = None
    scores: Array | None = None


def stack_layers(make_layer: Callable[[nnx.Rngs], nnx.Module], num_layers: int, rngs: nnx.Rngs):
    """Builds `num_layers` independent layers whose parameters are stacked on axis 0."""

    @nnx.split_rngs(splits=num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make(layer_rngs: nnx.Rngs) -> nnx.Module:
        return make_layer(layer_rngs)

    return make(rngs)


def unstack_layers(layers: nnx.Module) -> nnx.List:
    """Per-layer modules from stacked ones: layer i's parameters are slice i of each stacked
    parameter (copies, made by one jitted call, so sharded parameters stay sharded)."""
    graphdef, state = nnx.split(layers)
    return nnx.List([nnx.merge(graphdef, layer) for layer in _split_layer_states(state)])


def _layer_states(state: Any) -> list[Any]:
    """The per-layer states of a stacked state: each leaf split once along axis 0."""
    leaves, treedef = jax.tree.flatten(state)
    per_leaf = [jnp.unstack(leaf) for leaf in leaves]
    return [jax.tree.unflatten(treedef, list(layer)) for layer in zip(*per_leaf, strict=True)]


_split_layer_states = jax.jit(_layer_states)


def run_stacked_layers(
    layers: nnx.Module,
    hidden: Array,
    call_layer: Callable[[nnx.Module, Array, Array | None], LayerOutput],
    *,
    num_layers: int,
    dropout_rng: Array | None,
    scan: bool,
    remat: bool,
) -> tuple[Array, LayerOutput]:
    """Applies stacked layers in order, with `jax.lax.scan` or an unrolled loop.

    `layers` is one module with parameters stacked on axis 0 (`stack_layers`), or an
    `nnx.List` of per-layer modules (`unstack_layers`; always unrolled). `call_layer(layer,
    hidden, key)` runs one layer. Returns the final hidden state and the per-layer
    `LayerOutput`s stacked on a leading axis [L, ...]. All paths compute the same.
    Unrolled over stacked parameters, each is split once (`jnp.unstack`), so the backward pass
    assembles its gradient with one concatenation; indexing layer i instead makes the gradient
    of every layer a zero-padded full-size copy, summed L times. The split still copies every
    layer's weights on every call, which per-layer modules avoid (`with_layer_list`).
    """
    keys = None if dropout_rng is None else jax.random.split(dropout_rng, num_layers)

    def layer_body(graphdef: nnx.GraphDef) -> Callable:
        def body(h: Array, inputs: tuple[Any, Array | None]) -> tuple[Array, LayerOutput]:
            layer_state, key = inputs
            out = call_layer(nnx.merge(graphdef, layer_state), h, key)
            return out.hidden, out

        return jax.checkpoint(body) if remat else body

    if isinstance(layers, nnx.List):
        per_layer = [nnx.split(layer) for layer in layers]
    else:
        graphdef, state = nnx.split(layers)
        if scan:
            return jax.lax.scan(layer_body(graphdef), hidden, (state, keys))
        per_layer = [(graphdef, layer_state) for layer_state in _layer_states(state)]
    outs = []
    for i, (graphdef, layer_state) in enumerate(per_layer):
        body = layer_body(graphdef)
        hidden, out = body(hidden, (layer_state, None if keys is None else keys[i]))
        outs.append(out)
    return hidden, jax.tree.map(lambda *xs: jnp.stack(xs), *outs)


def encoder_output(
    embedding_output: Array,
    final_hidden: Array,
    per_layer: LayerOutput,
    pooler: Pooler,
    *,
    output_hidden_states: bool,
    output_attentions: bool,
    output_attention_scores: bool,
) -> EncoderOutput:
    """Assembles an `EncoderOutput` from the embedding output and stacked layer outputs."""
    hidden_states = None
    if output_hidden_states:
        hidden_states = jnp.concatenate([embedding_output[None], per_layer.hidden], axis=0)
    return EncoderOutput(
        last_hidden_state=final_hidden,
        pooler_output=pooler(final_hidden),
        hidden_states=hidden_states,
        attentions=per_layer.probs if output_attentions else None,
        attention_scores=per_layer.scores if output_attention_scores else None,
    )
