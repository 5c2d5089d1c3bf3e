"""The pure train step: gradients (optionally accumulated), optimizer update, guards.

`make_train_step` returns ``step_fn(state, frozen, batch, base_key) -> (state, metrics)``,
meant to be wrapped in `jax.jit` by the loop. The model is rebuilt inside the step with
``nnx.merge(graphdef, state.params, frozen)`` and handed to the task's
``loss_fn(model, batch, rng) -> (loss, aux)`` (or ``loss_fn(model, batch, rng, step=step)``
when the task asks for the step). `aux` is a dict of scalar metrics averaged over
micro-batches. Changes the loss function makes to non-parameter state (e.g. RNG counters)
are discarded: randomness comes from ``rng = fold_in(base_key, step)`` (and
``fold_in(rng, i)`` for micro-batch ``i``), so a resumed run repeats the same random numbers.

Guard: if the loss, the gradient norm or the new parameters are not finite, the update is
dropped (params and optimizer state keep their old values), ``nonfinite_steps`` grows and
``metrics['finite']`` is 0; the loop then stops or goes on, by config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from squeezemobile_jax.training.mesh import DATA_AXIS
from squeezemobile_jax.training.train_state import TrainState

PyTree = Any
Batch = Mapping[str, jax.Array]
LossFn = Callable[..., tuple[jax.Array, Mapping[str, jax.Array]]]
GradFn = Callable[[PyTree, Batch, jax.Array], tuple[tuple[jax.Array, PyTree], PyTree]]


def split_microbatches(batch: Batch, k: int) -> Batch:
    """``[B, ...] -> [k, B/k, ...]``; micro-batch ``i`` holds rows ``i, i+k, i+2k, ...``.

    The strided split keeps every micro-batch spread over all devices when the batch is
    sharded along its leading axis (each device's block of rows is split locally).
    """

    def one(x: jax.Array) -> jax.Array:
        if x.shape[0] % k:
            raise ValueError(f"batch of {x.shape[0]} rows is not divisible by {k} micro-batches")
        return jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)

    return jax.tree.map(one, batch)


def accumulate_gradients(
    grad_fn: GradFn,
    params: PyTree,
    batch: Batch,
    rng: jax.Array,
    k: int,
    micro_sharding: jax.sharding.Sharding | None = None,
) -> tuple[tuple[jax.Array, PyTree], PyTree]:
    """Mean loss, aux and gradients over `k` micro-batches, with `lax.scan` (one at a time).

    ``grad_fn(params, micro_batch, rng) -> ((loss, aux), grads)``. For a per-example-mean
    loss this equals the gradient of the whole batch, at 1/k of the activation memory.
    """
    if k == 1:
        return grad_fn(params, batch, rng)
    micro = split_microbatches(batch, k)
    if micro_sharding is not None:
        micro = jax.lax.with_sharding_constraint(micro, micro_sharding)
    first = jax.tree.map(lambda x: x[0], micro)
    shapes = jax.eval_shape(grad_fn, params, first, rng)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), shapes)

    def body(acc: PyTree, xs: tuple[jax.Array, Batch]) -> tuple[PyTree, None]:
        i, mb = xs
        out = grad_fn(params, mb, jax.random.fold_in(rng, i))
        return jax.tree.map(lambda a, o: a + o.astype(jnp.float32), acc, out), None

    total, _ = jax.lax.scan(body, zeros, (jnp.arange(k), micro))
    return jax.tree.map(lambda t, s: (t / k).astype(s.dtype), total, shapes)


def make_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    schedule: Callable[[jax.Array], jax.Array] | None = None,
    grad_accum_steps: int = 1,
    loss_takes_step: bool = False,
    mesh: jax.sharding.Mesh | None = None,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """Builds ``step_fn(state, frozen, batch, base_key) -> (new_state, metrics)``.

    metrics: ``loss``, the task's aux metrics, ``grad_norm`` (before clipping),
    ``param_norm``, ``update_norm``, ``lr`` (if `schedule`), ``finite`` (1.0 / 0.0).
    """
    tx = optax.with_extra_args_support(tx)
    micro_sharding = None
    if mesh is not None and grad_accum_steps > 1:
        micro_sharding = jax.sharding.NamedSharding(mesh, jax.P(None, DATA_AXIS))

    def step_fn(
        state: TrainState, frozen: nnx.State, batch: Batch, base_key: jax.Array
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        step = state.step

        def loss_of_params(params: nnx.State, mb: Batch, rng: jax.Array):
            model = nnx.merge(graphdef, params, frozen, copy=True)
            if loss_takes_step:
                loss, aux = loss_fn(model, mb, rng, step=step)
            else:
                loss, aux = loss_fn(model, mb, rng)
            return loss.astype(jnp.float32), dict(aux)

        grad_fn = jax.value_and_grad(loss_of_params, has_aux=True)
        rng = jax.random.fold_in(base_key, step)
        (loss, aux), grads = accumulate_gradients(
            grad_fn, state.params, batch, rng, grad_accum_steps, micro_sharding
        )
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params, step=step)
        params = optax.apply_updates(state.params, updates)
        new_norm = optax.tree.norm(params)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(new_norm)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        new_state = state.replace(
            step=step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32),
        )
        metrics = {
            "loss": loss,
            **aux,
            "grad_norm": grad_norm,
            # Norms of what was applied: the old params and 0 when the update was dropped.
            "param_norm": jnp.where(finite, new_norm, optax.tree.norm(state.params)),
            "update_norm": jnp.where(finite, optax.tree.norm(updates), 0.0),
            "finite": finite.astype(jnp.float32),
        }
        if schedule is not None:
            metrics["lr"] = jnp.asarray(schedule(step), jnp.float32)
        return new_state, metrics

    return step_fn
