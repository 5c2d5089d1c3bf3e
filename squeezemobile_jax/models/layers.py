"""Building blocks shared by the SqueezeBERT and MobileBERT families.

Layout is channels-last everywhere: activations are `[batch, seq, features]`.
Parameters are float32; each layer computes in the dtype it is given (`compute_dtype` of the
model config) while softmax and normalisation statistics stay in float32.
Dropout is functional: callers pass a PRNG key, so a step's randomness is a pure function of
the key the training loop derives from the step number.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array
log = logging.getLogger(__name__)
MASK_VALUE = float(jnp.finfo(jnp.float32).min)  # large finite negative for masked keys


@jax.custom_vjp
def gelu_erf(x: Array) -> Array:
    """The exact GELU, x * Phi(x) = x/2 * (1 + erf(x / sqrt 2)), as PyTorch computes it.

    `jax.nn.gelu(approximate=False)` goes through erfc, about twice as slow on CPUs; the two
    agree to float32 rounding (within 2e-6 absolute; both within 1.1e-6 of float64).
    The gradient, Phi(x) + x * phi(x), is recomputed from x in the backward pass: autodiff
    would keep the erf and exp terms as well, three FFN-sized residuals per scanned layer
    instead of one (IB-BERT's scanned training step at batch 8: 4.7 GB of XLA temporaries
    against 3.9 GB; unrolled steps recompute them anyway).
    """
    return x * _normal_cdf(x)


def _normal_cdf(x: Array) -> Array:
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    return 0.5 * (1.0 + jax.lax.erf(x * math.sqrt(0.5)))


def _gelu_erf_forward(x: Array) -> tuple[Array, Array]:
    return gelu_erf(x), x


def _gelu_erf_backward(x: Array, grad: Array) -> tuple[Array]:
    pdf = jnp.exp(-0.5 * jnp.square(x)) * (1.0 / math.sqrt(2.0 * math.pi))
    return (grad * (_normal_cdf(x) + x * pdf),)


gelu_erf.defvjp(_gelu_erf_forward, _gelu_erf_backward)


_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": gelu_erf,
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "tanh": jnp.tanh,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def activation(name: str) -> Callable[[Array], Array]:
    """The activation called `name` in HF configs ("gelu" is the exact erf GELU)."""
    return _ACTIVATIONS[name]


def truncated_normal(stddev: float) -> nnx.Initializer:
    """N(0, stddev**2) cut at two standard deviations, as TF's `truncated_normal_initializer`
    in the original BERT and MobileBERT code: values in (-2 stddev, 2 stddev), standard
    deviation 0.8796 stddev.

    Inverse-CDF sampling of `random_bits`' uniforms: one fused kernel per parameter, several
    times faster to compile than `jax.random.truncated_normal` (threefry), which made building
    a small model mostly compile time.
    """
    lo, hi = math.erf(-math.sqrt(2.0)), math.erf(math.sqrt(2.0))  # erf at -2 / sqrt 2, 2 / sqrt 2

    def init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
        # Top 24 bits -> a uniform in (0, 1) at bucket centres, exact in float32.
        u = ((random_bits(key, shape) >> 8).astype(jnp.float32) + 0.5) * (1.0 / 2**24)
        z = math.sqrt(2.0) * jax.scipy.special.erfinv(lo + (hi - lo) * u)
        return (stddev * jnp.clip(z, -2.0, 2.0)).astype(dtype)

    return init


def dropout(x: Array, rate: float, rng: Array | None, deterministic: bool) -> Array:
    """Inverted dropout; identity when `deterministic` or `rate == 0`.

    The mask comes from `random_bits(rng, x.shape)` (one fused hash per element); an element
    is dropped when its 32 bits fall below `rate * 2**32`, and kept elements are scaled by
    1 / (realised keep probability), so E[output] = x.
    """
    if deterministic or rate == 0.0:
        return x
    if rng is None:
        raise ValueError("dropout needs a PRNG key when deterministic=False")
    drop_below = min(round(rate * 2**32), 2**32 - 1)
    keep = random_bits(rng, x.shape) >= jnp.uint32(drop_below)
    return jnp.where(keep, x * (2**32 / (2**32 - drop_below)), 0.0).astype(x.dtype)


def random_bits(rng: Array, shape: tuple[int, ...]) -> Array:
    """Uniform uint32 bits of `shape` from a PRNG key: a counter-based hash of each element's
    flat index under two 32-bit words drawn from `rng`.

    Each word is hashed with Wellons' lowbias32 finaliser (an invertible integer mix), keyed
    as mix(mix(index ^ k0) + k1): one elementwise kernel that XLA fuses into its consumer.
    `jax.random.bits` (threefry) costs about ten times more on CPUs, where its rounds run as
    a loop over the whole array. Arrays of more than 2**32 elements repeat the mask. The key
    words are the key's own data (keys from `split` / `fold_in` are already threefry hashes),
    so no threefry program is compiled per call.
    """
    words = jax.random.key_data(rng).reshape(-1)
    k0, k1 = words[0], words[1]
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
        stride = (stride * shape[axis]) % 2**32
    return _lowbias32(_lowbias32(index ^ k0) + k1)


def _lowbias32(h: Array) -> Array:
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x7FEB352D)
    h = h ^ (h >> 15)
    h = h * jnp.uint32(0x846CA68B)
    return h ^ (h >> 16)


class KeySplitter:
    """Hands out fresh dropout keys from one key (None stays None, for deterministic calls)."""

    def __init__(self, rng: Array | None):
        self._rng = rng
        self._count = 0

    def __call__(self) -> Array | None:
        if self._rng is None:
            return None
        self._count += 1
        return jax.random.fold_in(self._rng, self._count)


class Dense(nnx.Module):
    """y = x @ kernel + bias. kernel: [in, out], bias: [out]."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init_std: float,
        rngs: nnx.Rngs,
        use_bias: bool = True,
    ):
        self.kernel = nnx.Param(
            truncated_normal(init_std)(rngs.params(), (in_features, out_features))
        )
        self.bias = nnx.data(nnx.Param(jnp.zeros((out_features,))) if use_bias else None)

    def __call__(self, x: Array) -> Array:
        y = jnp.dot(x, self.kernel[...].astype(x.dtype))
        return y if self.bias is None else y + self.bias[...].astype(x.dtype)


class GroupedDense(nnx.Module):
    """A grouped 1x1 convolution as one einsum: contiguous channel blocks, one per group.

    kernel: [groups, in/groups, out/groups]; bias: [out]. Input [..., in] -> output [..., out].
    Output block g sees only input block g, like `Conv1d(groups=g, kernel_size=1)`. The einsum
    runs group-major ([G, N, in/G] x [G, in/G, out/G]), a batched matmul that XLA runs about
    twice as fast on CPU (forward + backward) as contracting with the group axis in the middle.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        groups: int,
        *,
        init_std: float,
        rngs: nnx.Rngs,
    ):
        self.groups = groups
        shape = (groups, in_features // groups, out_features // groups)
        self.kernel = nnx.Param(truncated_normal(init_std)(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((out_features,)))

    def __call__(self, x: Array) -> Array:
        return project_together(x, self)[0]


def project_together(x: Array, *layers: Dense | GroupedDense) -> list[Array]:
    """Applies several projections that read the same `x`; one output per layer, in order.

    Compatible layers (all `Dense`, or `GroupedDense` with one group count) run as one matmul
    over their kernels concatenated along the output axis (a small copy per call): Q, K and V
    then cost one wide matmul instead of three narrow ones, markedly faster on CPUs at small
    batch. x: [..., in] -> [..., out_i] per layer.
    """
    sets: dict[object, list[int]] = {}
    for index, layer in enumerate(layers):
        sets.setdefault(layer.groups if isinstance(layer, GroupedDense) else "dense", []).append(
            index
        )
    outputs: list[Array] = [x] * len(layers)
    for kind, indices in sets.items():
        members = [layers[i] for i in indices]
        fused = _dense_together(x, members) if kind == "dense" else _grouped_together(x, members)
        for i, y in zip(indices, fused, strict=True):
            outputs[i] = y
    return outputs


def _dense_together(x: Array, layers: list[Dense]) -> list[Array]:
    kernels = [layer.kernel[...] for layer in layers]
    sizes = [k.shape[-1] for k in kernels]
    y = jnp.dot(x, _concat_last(kernels).astype(x.dtype))
    biases = [
        jnp.zeros(n) if layer.bias is None else layer.bias[...]
        for layer, n in zip(layers, sizes, strict=True)
    ]
    return _split_last(y + _concat_last(biases).astype(x.dtype), sizes)


def _grouped_together(x: Array, layers: list[GroupedDense]) -> list[Array]:
    kernels = [layer.kernel[...] for layer in layers]
    sizes = [k.shape[-1] for k in kernels]
    g, cin, _ = kernels[0].shape
    kernel = _concat_last(kernels).astype(x.dtype)  # [G, in/G, sum(out_i)/G]
    lead = x.shape[:-1]
    if g == 1:
        ys = _split_last(jnp.dot(x, kernel[0]), sizes)
    else:
        xg = x.reshape(-1, g, cin).transpose(1, 0, 2)  # [G, N, in/G]
        y = jnp.einsum("gni,gio->gno", xg, kernel)  # [G, N, sum(out_i)/G]
        ys = [
            part.transpose(1, 0, 2).reshape(*lead, g * part.shape[-1])
            for part in _split_last(y, sizes)
        ]
    return [y + layer.bias[...].astype(x.dtype) for y, layer in zip(ys, layers, strict=True)]


def grouped_feed_forward(
    x: Array, intermediate: GroupedDense, output: GroupedDense, act: Callable[[Array], Array]
) -> Array:
    """output(act(intermediate(x))); x: [..., in] -> [..., out].

    With one group count g > 1 for both layers, output group k reads exactly intermediate group
    k's channels, so the wide [..., intermediate] activations stay group-major ([G, N, I/G])
    between the two matmuls instead of being transposed to token-major and back.
    """
    g = intermediate.groups
    if g == 1 or output.groups != g:
        return output(act(intermediate(x)))
    lead, cin = x.shape[:-1], x.shape[-1] // g
    xg = x.reshape(-1, g, cin).transpose(1, 0, 2)  # [G, N, in/G]

    def grouped(layer: GroupedDense, h: Array) -> Array:  # [G, N, a] -> [G, N, b]
        kernel = layer.kernel[...].astype(h.dtype)
        bias = layer.bias[...].astype(h.dtype).reshape(g, 1, -1)
        return jnp.einsum("gni,gio->gno", h, kernel) + bias

    y = grouped(output, act(grouped(intermediate, xg)))  # [G, N, out/G]
    return y.transpose(1, 0, 2).reshape(*lead, -1)


def _concat_last(arrays: list[Array]) -> Array:
    return arrays[0] if len(arrays) == 1 else jnp.concatenate(arrays, axis=-1)


def _split_last(y: Array, sizes: list[int]) -> list[Array]:
    if len(sizes) == 1:
        return [y]
    bounds = [sum(sizes[:k]) for k in range(1, len(sizes))]
    return jnp.split(y, bounds, axis=-1)


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


def split_heads(x: Array, num_heads: int) -> Array:
    """[B, T, N*D] -> [B, T, N, D] (channel c = head * D + d, as BERT)."""
    return x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)


def use_fused_attention() -> bool:
    """Whether `attention` may call `jax.nn.dot_product_attention` (off-CPU backends)."""
    return jax.default_backend() != "cpu"


def attention_is_fused(*, need_weights: bool, dropout_rate: float, deterministic: bool) -> bool:
    """Whether `attention` takes the `fused_attention` path: no maps asked for, no attention
    dropout (the fused kernels have none) and an accelerator backend."""
    use_dropout = not deterministic and dropout_rate > 0.0
    return not need_weights and not use_dropout and use_fused_attention()


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


class Pooler(nnx.Module):
    """Takes the first token; with `activate`, applies dense + tanh (BERT's pooler)."""

    def __init__(self, hidden_size: int, activate: bool, *, init_std: float, rngs: nnx.Rngs):
        self.dense = nnx.data(
            Dense(hidden_size, hidden_size, init_std=init_std, rngs=rngs) if activate else None
        )

    def __call__(self, sequence: Array) -> Array:
        first = sequence[:, 0]
        return first if self.dense is None else jnp.tanh(self.dense(first))


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


class Embeddings(nnx.Module):
    """Word + position + token-type embeddings, then a norm and dropout (both families).

    The word table is `[vocab, embedding_size]`. With `trigram_input` (MobileBERT), position t
    sees `[e[t+1], e[t], e[t-1]]` (zeros past the edges), and when the word vectors are not
    `hidden_size` wide, a dense `embedding_transformation` maps them up. Output: [B, T, hidden].
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
            if input_size != hidden_size
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
