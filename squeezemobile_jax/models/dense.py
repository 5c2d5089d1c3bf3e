"""Dense layers: plain and grouped (SqueezeBERT's grouped 1x1 convolutions), and running several
that read one input as one matmul. Activations are [batch, seq, features].
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from flax import nnx

from squeezemobile_jax.models.ops import Array, truncated_normal


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
