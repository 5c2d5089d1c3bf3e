"""The pure train step: gradient accumulation, RNG contract, non-finite guard, FSDP specs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import toy_task as toy
from flax import nnx

from squeezemobile_jax.training import mesh as mesh_lib
from squeezemobile_jax.training import optimizers, step
from squeezemobile_jax.training.config import training_defaults
from squeezemobile_jax.training.train_state import create_train_state


def _setup(accum: int):
    model = toy.ToyMLP(rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    cfg = training_defaults().optimizer
    cfg.learning_rate = 0.05
    opt = optimizers.build_optimizer(cfg, total_steps=10)
    fn = step.make_train_step(
        graphdef,
        toy.toy_loss,
        opt.tx,
        schedule=opt.schedule,
        grad_accum_steps=accum,
        mesh=mesh_lib.make_mesh(),
    )
    return rest, create_train_state(params, opt.tx), jax.jit(fn)


def _batch(i: int, n: int = 16):
    return {k: jnp.asarray(v) for k, v in toy.toy_global_batch(i, n).items()}


def test_accumulated_gradients_equal_full_batch_gradient():
    model = toy.ToyMLP(rngs=nnx.Rngs(1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = _batch(0, 24)

    def loss(p, b):
        return toy.toy_loss(nnx.merge(graphdef, p, rest, copy=True), b, None)

    def grad_fn(p, b, rng):
        return jax.value_and_grad(loss, has_aux=True)(p, b)

    (l_acc, aux_acc), g_acc = jax.jit(
        lambda p, b: step.accumulate_gradients(grad_fn, p, b, jax.random.key(0), 4)
    )(params, batch)
    (l_full, aux_full), g_full = jax.value_and_grad(loss, has_aux=True)(params, batch)
    np.testing.assert_allclose(l_acc, l_full, rtol=1e-5)
    np.testing.assert_allclose(aux_acc["mae"], aux_full["mae"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_acc), jax.tree.leaves(g_full)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_accumulating_train_step_matches_one_large_batch():
    rest, s1, f1 = _setup(1)
    _, s4, f4 = _setup(4)
    key = jax.random.key(0)
    for i in range(3):
        s1, m1 = f1(s1, rest, _batch(i), key)
        s4, m4 = f4(s4, rest, _batch(i), key)
        np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s4.params), jax.tree.leaves(s1.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(s4.step) == 3


def test_step_rng_is_fold_in_of_base_key_and_step():
    model = toy.ToyMLP(rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(m, b, rng):
        loss, _ = toy.toy_loss(m, b, rng)
        return loss, {"u": jax.random.uniform(rng)}

    tx = optax.sgd(0.1)
    fn = jax.jit(step.make_train_step(graphdef, loss_fn, tx))
    state = create_train_state(params, tx)
    base = jax.random.key(7)
    for i in range(3):
        state, m = fn(state, rest, _batch(i), base)
        want = jax.random.uniform(jax.random.fold_in(jax.random.key(7), i))
        assert float(m["u"]) == float(want)


def test_nonfinite_step_leaves_params_and_optimizer_state_unchanged():
    rest, state, fn = _setup(1)
    key = jax.random.key(0)
    state, _ = fn(state, rest, _batch(0), key)
    before = jax.tree.map(np.asarray, (state.params, state.opt_state))
    bad = _batch(1)
    bad["x"] = bad["x"].at[3, 2].set(jnp.nan)
    state, metrics = fn(state, rest, bad, key)
    assert float(metrics["finite"]) == 0.0 and not np.isfinite(float(metrics["loss"]))
    after = jax.tree.map(np.asarray, (state.params, state.opt_state))
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)):
        assert np.array_equal(a, b)
    assert int(state.step) == 2 and int(state.nonfinite_steps) == 1


def test_fsdp_spec_shards_largest_divisible_axis():
    P = jax.P
    assert mesh_lib.fsdp_spec((16, 1024), 4, 8, 0.0) == P(None, "data")
    assert mesh_lib.fsdp_spec((1024, 6), 4, 8, 0.0) == P("data")
    assert mesh_lib.fsdp_spec((30, 6), 4, 8, 0.0) == P()  # nothing divisible by 8
    assert mesh_lib.fsdp_spec((16, 1024), 4, 8, 1.0) == P()  # 64 KiB < 1 MB threshold
    assert mesh_lib.fsdp_spec((16, 1024), 4, 1, 0.0) == P()  # one device
