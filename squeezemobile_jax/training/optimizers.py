"""LAMB and AdamW as BERT / MobileBERT define them, with masks and per-parameter lr scales.

Both optimizers are one optax transformation, `scale_by_bert_adam`, which returns the final
(negated, learning-rate-scaled) updates; add them to the parameters with
`optax.apply_updates`. Per parameter ``p`` with gradient ``g`` at 0-based step ``t``::

    m <- b1 * m + (1 - b1) * g            # no bias correction (BERT); optional
    v <- b2 * v + (1 - b2) * g**2
    u  = m / (sqrt(v) + eps) + wd * p      # wd only where the decay mask is True
    r  = |p| / |u| if both > 0 else 1      # LAMB trust ratio, only where the trust mask is True
    update = -lr(t) * scale(t) * r * u

For a stacked parameter (layers along its leading axes, see `paths.stacked_axes`) the norms
in the trust ratio are taken per layer slice, exactly as if each layer were its own variable.

**Per-parameter learning-rate scales** (progressive layer-wise distillation): `lr_scales` is a
function ``(step, params) -> tree of scales`` with the structure of `params`. Each scale is a
scalar or an array whose shape is a prefix of the parameter's shape (e.g. ``[num_layers]``
for a parameter stored as ``[num_layers, ...]``); it is broadcast along the leading axes.
Build one from a ``(step, path) -> scale`` function with `per_path_lr_scales`, or from a
``step -> tree`` function as ``lambda step, params: tree_fn(step)``. Example (layer ``l`` of
a model whose layers are stacked under ``.../layers/...`` trains at 3x, earlier layers at
0.3x, later ones not at all; configure ``stacked_params=(("/layers/", 1),)`` too)::

    def scale(step, path):
        if "/layers/" not in path:
            return 0.0
        layer = jnp.arange(num_layers)
        phase = step // steps_per_phase
        return jnp.where(layer == phase, 3.0, jnp.where(layer < phase, 0.3, 0.0))

Where a scale
is 0 the parameter gets an exactly-zero update and its moments ``m``, ``v`` are left
unchanged (bitwise), so a frozen parameter stays frozen. The original MobileBERT LAMB instead
resets gated moments to 0; the two agree whenever a gated parameter had zero moments, which
is how the progressive schedule uses it (later layers start untouched).

The schedule and the scales are evaluated at the training step the loop passes as
``tx.update(..., step=step)``; without it, at the number of updates applied so far.

Config (``config.optimizer``), read by `build_optimizer`:
  name: 'lamb' | 'adamw';  learning_rate;  weight_decay (0.01);  b1 (0.9);  b2 (0.999);
  eps (1e-6);  bias_correction (False);  clip_norm (1.0, 0 = off; global norm, before the
  optimizer);  exclude_from_weight_decay (regexes, default ('bias', 'norm'));
  exclude_1d (True);  exclude_from_trust_ratio (None -> same as weight decay);
  stacked_params (tuple of (regex, num_leading_axes));  schedule (see `schedules`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from squeezemobile_jax.training import paths, schedules

PyTree = Any
LrScales = Callable[[jax.Array, PyTree], PyTree]
MaskFn = Callable[[PyTree], PyTree]


class BertAdamState(NamedTuple):
    """Optimizer state: update count and the first/second moments (trees like the params)."""

    count: jax.Array
    mu: PyTree
    nu: PyTree


def per_path_lr_scales(fn: Callable[[jax.Array, str], Any]) -> LrScales:
    """Turns ``fn(step, path) -> scale | None`` into an `LrScales` (None means 1.0).

    `path` is the '/'-joined parameter name (see `paths.path_to_str`); `step` is a traced
    int32 scalar, so `fn` must use jnp ops on it.
    """

    def scales(step: jax.Array, params: PyTree) -> PyTree:
        def one(path: str, _: Any) -> jax.Array:
            s = fn(step, path)
            return jnp.ones((), jnp.float32) if s is None else jnp.asarray(s, jnp.float32)

        return paths.map_with_path(one, params)

    return scales


def _leading_broadcast(x: jax.Array, shape: tuple[int, ...], what: str, path: str) -> jax.Array:
    """Reshapes `x` (shape a prefix of `shape`) so it broadcasts along leading axes."""
    x = jnp.asarray(x)
    if tuple(x.shape) != tuple(shape[: x.ndim]):
        raise ValueError(
            f"{what} for parameter '{path}' has shape {tuple(x.shape)}, which is not a prefix of "
            f"the parameter shape {tuple(shape)}; give a scalar or an array over its leading "
            "(stacked layer) axes."
        )
    return x.reshape(x.shape + (1,) * (len(shape) - x.ndim))


def _slice_norm(x: jax.Array, n_stack: int) -> jax.Array:
    """L2 norm over all but the first `n_stack` axes, kept for broadcasting."""
    axes = tuple(range(n_stack, x.ndim))
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True))


def _as_mask_fn(mask: MaskFn | PyTree | bool | None, default: bool) -> MaskFn:
    if mask is None:
        return lambda p: jax.tree.map(lambda _: default, p)
    if isinstance(mask, bool):
        return lambda p: jax.tree.map(lambda _: mask, p)
    if callable(mask):
        return mask
    return lambda _: mask


def scale_by_bert_adam(
    learning_rate: float | schedules.Schedule,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    decay_mask: MaskFn | PyTree | None = None,
    trust_ratio_mask: MaskFn | PyTree | bool | None = False,
    num_stacked_axes: MaskFn | PyTree | None = None,
    lr_scales: LrScales | None = None,
    bias_correction: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """BERT-style Adam with decoupled weight decay, optional LAMB trust ratio and lr scales.

    Masks/axes are trees like the params, or functions ``params -> tree``. `decay_mask`
    defaults to all True; `trust_ratio_mask` False gives AdamW, a tree/function gives LAMB.
    `num_stacked_axes` (ints, default 0) marks stacked-layer parameters. Returns updates to be
    added to the params; ``update`` accepts an optional ``step`` keyword (int32 scalar).
    """
    decay_fn = _as_mask_fn(decay_mask, True)
    trust_fn = _as_mask_fn(trust_ratio_mask, False)
    stack_fn = (
        _as_mask_fn(num_stacked_axes, 0)
        if num_stacked_axes is not None
        else (lambda p: jax.tree.map(lambda _: 0, p))
    )

    def init_fn(params: PyTree) -> BertAdamState:
        zeros = jax.tree.map(jnp.zeros_like, params)
        return BertAdamState(jnp.zeros((), jnp.int32), zeros, jax.tree.map(jnp.zeros_like, params))

    def update_fn(grads, state, params=None, *, step=None, **_):
        if params is None:
            raise ValueError("scale_by_bert_adam needs the params: call tx.update(g, s, params).")
        t = state.count if step is None else jnp.asarray(step, jnp.int32)
        lr = learning_rate(t) if callable(learning_rate) else jnp.asarray(learning_rate)
        lr = jnp.asarray(lr, jnp.float32)
        leaves, treedef = jax.tree.flatten(params)
        path_list = [paths.path_to_str(kp) for kp, _ in jax.tree_util.tree_leaves_with_path(params)]
        flat = lambda tree: treedef.flatten_up_to(tree)  # noqa: E731
        g_l, m_l, v_l = flat(grads), flat(state.mu), flat(state.nu)
        decay_l, trust_l, stack_l = (
            flat(decay_fn(params)),
            flat(trust_fn(params)),
            flat(stack_fn(params)),
        )
        scale_l = flat(lr_scales(t, params)) if lr_scales is not None else [None] * len(leaves)
        tf = (t + 1).astype(jnp.float32)

        new_u, new_m, new_v = [], [], []
        for p, g, m, v, dec, tru, n_stack, scale, path in zip(
            leaves, g_l, m_l, v_l, decay_l, trust_l, stack_l, scale_l, path_list
        ):
            g = g.astype(jnp.float32)
            pf = p.astype(jnp.float32)
            m2 = b1 * m + (1.0 - b1) * g
            v2 = b2 * v + (1.0 - b2) * jnp.square(g)
            gate = None
            if scale is not None:
                scale = _leading_broadcast(scale, p.shape, "lr scale", path)
                gate = scale > 0
                m2 = jnp.where(gate, m2, m)
                v2 = jnp.where(gate, v2, v)
            if bias_correction:
                u = (m2 / (1.0 - b1**tf)) / (jnp.sqrt(v2 / (1.0 - b2**tf)) + eps)
            else:
                u = m2 / (jnp.sqrt(v2) + eps)
            if dec and weight_decay:
                u = u + weight_decay * pf
            if tru:
                w_norm = _slice_norm(pf, int(n_stack))
                u_norm = _slice_norm(u, int(n_stack))
                safe = jnp.where(u_norm > 0, u_norm, 1.0)
                ratio = jnp.where((w_norm > 0) & (u_norm > 0), w_norm / safe, 1.0)
                u = ratio * u
            upd = -lr * u
            if scale is not None:
                upd = jnp.where(gate, upd * scale, 0.0)
            new_u.append(upd.astype(p.dtype))
            new_m.append(m2)
            new_v.append(v2)
        unflat = lambda xs: jax.tree.unflatten(treedef, xs)  # noqa: E731
        new_state = BertAdamState(state.count + 1, unflat(new_m), unflat(new_v))
        return unflat(new_u), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def lamb(
    learning_rate: float | schedules.Schedule,
    *,
    weight_decay: float = 0.01,
    exclude: Sequence[str] = ("bias", "norm"),
    **kw: Any,
) -> optax.GradientTransformationExtraArgs:
    """LAMB as in MobileBERT's ``lamb_optimizer.py`` (decay and trust ratio share the mask)."""
    mask = lambda p: paths.weight_decay_mask(p, exclude)  # noqa: E731
    return scale_by_bert_adam(
        learning_rate, weight_decay=weight_decay, decay_mask=mask, trust_ratio_mask=mask, **kw
    )


def adamw(
    learning_rate: float | schedules.Schedule,
    *,
    weight_decay: float = 0.01,
    exclude: Sequence[str] = ("bias", "norm"),
    **kw: Any,
) -> optax.GradientTransformationExtraArgs:
    """BERT's AdamWeightDecay (no trust ratio; no bias correction unless asked)."""
    mask = lambda p: paths.weight_decay_mask(p, exclude)  # noqa: E731
    return scale_by_bert_adam(
        learning_rate, weight_decay=weight_decay, decay_mask=mask, trust_ratio_mask=False, **kw
    )


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """What the loop needs: the optax transformation and the schedule (for logging)."""

    tx: optax.GradientTransformationExtraArgs
    schedule: schedules.Schedule


def build_optimizer(
    cfg: ml_collections.ConfigDict,
    total_steps: int,
    lr_scales: LrScales | None = None,
) -> Optimizer:
    """Builds the optimizer described by ``config.optimizer`` (see module doc).

    `total_steps` is the run length (the default decay horizon). `lr_scales` (optional)
    multiplies each parameter's update, see `per_path_lr_scales`.
    """
    name = cfg.get("name", "lamb")
    if name not in ("lamb", "adamw"):
        raise ValueError(f"optimizer.name={name!r} is unknown; use 'lamb' or 'adamw'.")
    peak = float(cfg.learning_rate)
    schedule = schedules.schedule_from_config(
        cfg.get("schedule", ml_collections.ConfigDict()), peak, total_steps
    )
    rules = tuple((str(r), int(n)) for r, n in (cfg.get("stacked_params", ()) or ()))
    exclude_wd = tuple(cfg.get("exclude_from_weight_decay", ("bias", "norm")) or ())
    exclude_1d = bool(cfg.get("exclude_1d", True))
    exclude_tr = cfg.get("exclude_from_trust_ratio", None)
    exclude_tr = exclude_wd if exclude_tr is None else tuple(exclude_tr)

    def stack_fn(p: PyTree) -> PyTree:
        return paths.stacked_axes(p, rules)

    def decay_fn(p: PyTree) -> PyTree:
        return paths.weight_decay_mask(p, exclude_wd, exclude_1d, stack_fn(p))

    def trust_fn(p: PyTree) -> PyTree:
        return paths.weight_decay_mask(p, exclude_tr, exclude_1d, stack_fn(p))

    core = scale_by_bert_adam(
        schedule,
        b1=float(cfg.get("b1", 0.9)),
        b2=float(cfg.get("b2", 0.999)),
        eps=float(cfg.get("eps", 1e-6)),
        weight_decay=float(cfg.get("weight_decay", 0.01)),
        decay_mask=decay_fn,
        trust_ratio_mask=trust_fn if name == "lamb" else False,
        num_stacked_axes=stack_fn,
        lr_scales=lr_scales,
        bias_correction=bool(cfg.get("bias_correction", False)),
    )
    clip = float(cfg.get("clip_norm", 1.0) or 0.0)
    tx = optax.chain(clip_by_global_norm(clip), core) if clip > 0 else core
    return Optimizer(tx=tx, schedule=schedule)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """TF's ``clip_by_global_norm``: ``g * max_norm / max(global_norm, max_norm)``."""

    def init_fn(params: PyTree) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        norm = optax.tree.norm(updates)
        factor = max_norm / jnp.maximum(norm, max_norm)
        return jax.tree.map(lambda g: (g * factor).astype(g.dtype), updates), state

    return optax.GradientTransformation(init_fn, update_fn)
