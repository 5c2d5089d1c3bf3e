"""The generic loop in one process: SIGTERM, corrupt checkpoints, non-finite steps, logs."""

from __future__ import annotations

import json
import logging
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy_task as toy
from flax import nnx

from squeezemobile_jax import cpu_tuning
from squeezemobile_jax.models import flops
from squeezemobile_jax.training import checkpoint, evaluation, loop, paths


def _run(workdir, steps=10, ckpt_every=5, batches=None, **train):
    config = toy.toy_config(steps)
    config.checkpoint.every_steps = ckpt_every
    config.checkpoint.async_save = True
    config.optimizer.schedule.decay_steps = 20  # same lr schedule whatever the run length
    for k, v in train.items():
        config.train[k] = v
    model = toy.ToyMLP(rngs=nnx.Rngs(0))
    task = loop.Task(loss_fn=toy.toy_loss)
    return loop.train_and_evaluate(config, workdir, task, model, batches or toy.toy_batches(16))


def _metrics(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _flat(state):
    return [(paths.path_to_str(kp), x) for kp, x in jax.tree_util.tree_leaves_with_path(state)]


def _numpy_mse(p: dict, batches: list[dict]) -> float:
    """The toy MLP's weighted mean squared error in float64 NumPy."""
    total = count = 0.0
    for b in batches:
        h = b["x"].astype(np.float64) @ p["dense1/kernel"] + p["dense1/bias"]
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        h = (h - mu) / np.sqrt(var + 1e-6) * p["norm/scale"] + p["norm/bias"]
        out = np.tanh(h) @ p["dense2/kernel"] + p["dense2/bias"]
        per_example = np.mean((out - b["y"]) ** 2, axis=-1)
        total += float(np.sum(per_example * b["weight"]))
        count += float(np.sum(b["weight"]))
    return total / count


def _ckpt_steps(workdir) -> list[int]:
    d = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def _saved_params(workdir, step):
    model = toy.ToyMLP(rngs=nnx.Rngs(0))
    target = nnx.state(model, nnx.Param)
    return checkpoint.restore_params(os.path.join(workdir, "checkpoints"), target, step)


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path):
    inner = toy.toy_batches(16)

    def batches(start):
        for i, b in enumerate(inner(start), start):
            if i == 6:  # delivered while step 6 is being prepared
                os.kill(os.getpid(), signal.SIGTERM)
            yield b

    result = _run(tmp_path, steps=20, ckpt_every=100, batches=batches)
    assert result.preempted and result.step == 7
    assert _ckpt_steps(tmp_path) == [7]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    # The saved checkpoint holds the params the run ended with.
    saved = _saved_params(tmp_path, 7)
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(result.state.params)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


# A failed orbax restore leaves tensorstore callbacks for an event loop it has closed.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_truncated_latest_checkpoint_is_skipped(tmp_path, caplog):
    first = _run(tmp_path, steps=10, ckpt_every=5)
    assert _ckpt_steps(tmp_path) == [5, 10]
    at_5 = jax.tree.map(np.asarray, _saved_params(tmp_path, 5))
    for root, _, files in os.walk(tmp_path / "checkpoints" / "10"):
        for name in files:
            path = os.path.join(root, name)
            if os.sep + "d" + os.sep in path:  # array data files
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
    assert first.step == 10
    with caplog.at_level(logging.WARNING):
        resumed = _run(tmp_path, steps=12, ckpt_every=5)
    assert resumed.restored_step == 5
    assert any("checkpoints/10 cannot be used" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "checkpoints_corrupt" / "10").exists()
    assert _ckpt_steps(tmp_path) == [5, 10, 12]
    # Restarting from 5 replays steps 6..10: the metrics match the first run's.
    logged = _metrics(tmp_path)
    first_run = {m["step"]: m["loss"] for m in logged[:10]}
    second_run = {m["step"]: m["loss"] for m in logged[10:]}
    assert sorted(second_run) == list(range(6, 13))
    for s in range(6, 11):
        assert second_run[s] == first_run[s]
    still_5 = jax.tree.map(np.asarray, _saved_params(tmp_path, 5))
    for a, b in zip(jax.tree.leaves(still_5), jax.tree.leaves(at_5)):
        assert np.array_equal(a, b)


def test_nan_batch_stops_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(loop.NonFiniteError, match=r"step 7.*last good checkpoint is step 5"):
        _run(tmp_path, steps=10, ckpt_every=5, batches=toy.toy_batches(16, nan_at_step=6))
    assert _ckpt_steps(tmp_path) == [5]
    params = _saved_params(tmp_path, 5)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_nan_batch_is_skipped_when_configured(tmp_path):
    result = _run(
        tmp_path,
        steps=10,
        ckpt_every=5,
        batches=toy.toy_batches(16, nan_at_step=6),
        nonfinite="skip",
    )
    assert result.step == 10 and int(result.state.nonfinite_steps) == 1
    logged = {m["step"]: m for m in _metrics(tmp_path)}
    assert logged[7]["finite"] == 0.0 and logged[7]["loss"] == "nan"
    assert logged[7]["param_norm"] == logged[6]["param_norm"]  # update dropped
    assert logged[8]["param_norm"] != logged[7]["param_norm"]  # training went on
    assert _ckpt_steps(tmp_path) == [5, 10]
    for step in (5, 10):
        params = _saved_params(tmp_path, step)
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
    assert checkpoint.read_metadata(tmp_path / "checkpoints")["nonfinite_steps"] == 1


def test_logs_config_and_eval(tmp_path):
    calls = []
    eval_set = [toy.toy_global_batch(1000 + i, 8) for i in range(3)]
    for b in eval_set:
        b["weight"] = np.ones(8, np.float32)
    eval_set[-1]["weight"][5:] = 0.0  # padded rows of a last partial batch

    def sq_err_sums(model, b):
        per_example = jnp.mean(jnp.square(model(b["x"]) - b["y"]), axis=-1)
        return {"sq_err": jnp.sum(per_example * b["weight"]), "count": jnp.sum(b["weight"])}

    summed = evaluation.summed_metrics(sq_err_sums)
    finals = {}

    def eval_fn(model, mesh, step):
        calls.append(step)
        sums = summed(model, eval_set, mesh)
        params = {path: np.asarray(x, np.float64) for path, x in _flat(nnx.state(model, nnx.Param))}
        finals[step] = _numpy_mse(params, eval_set)
        return {"mse": sums["sq_err"] / sums["count"], "count": sums["count"]}

    config = toy.toy_config(6)
    config.train.eval_every = 3
    config.train.log_every = 2
    task = loop.Task(
        loss_fn=toy.toy_loss,
        eval_fn=eval_fn,
        flops_per_example=1e6,
        count_fn=lambda b: {"examples": len(b["x"]), "tokens": b["x"].size},
        checkpoint_metadata=lambda step: {"phase": step // 3},
    )
    config.train.peak_flops_per_device = 1e12
    loop.train_and_evaluate(
        config, tmp_path, task, toy.ToyMLP(rngs=nnx.Rngs(0)), toy.toy_batches(16)
    )
    assert calls == [3, 6]
    logged = _metrics(tmp_path)
    train_steps = [m["step"] for m in logged if "loss" in m]
    assert train_steps == [2, 4, 6]
    row = next(m for m in logged if m["step"] == 4 and "loss" in m)
    assert row["tokens_per_sec"] == pytest.approx(8 * row["examples_per_sec"])
    assert row["mfu"] == pytest.approx(1e6 * row["examples_per_sec"] / 1e12)
    evals = [m for m in logged if "eval/mse" in m]
    assert [m["step"] for m in evals] == [3, 6]
    for m in evals:
        assert m["eval/count"] == 21.0
        assert m["eval/mse"] == pytest.approx(finals[m["step"]], rel=1e-5)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["train"]["num_steps"] == 6
    assert checkpoint.read_metadata(tmp_path / "checkpoints")["task"] == {"phase": 2}


def test_logs_the_time_spent_waiting_for_input(tmp_path):
    sleep, per_batch, steps = 0.25, 16, 6
    _run(
        tmp_path,
        steps=steps,
        ckpt_every=100,
        batches=toy.toy_batches(per_batch, sleep=sleep),
        log_every=2,
    )
    rows = [m for m in _metrics(tmp_path) if "loss" in m]
    assert [r["step"] for r in rows] == [2, 4, 6]
    # Each row covers the wall time since the last row; its examples come from 2 steps.
    waited = [r["input_wait_fraction"] * 2 * per_batch / r["examples_per_sec"] for r in rows]
    # The iterator slept `sleep` seconds before each of the run's batches.
    assert steps * sleep <= sum(waited) <= steps * sleep + 0.3, waited
    assert rows[1]["input_wait_fraction"] > 0.6  # no compile, no final checkpoint in it


def test_waiting_while_a_step_runs_is_not_counted(tmp_path):
    def slow_loss(model, batch, rng):  # the toy loss plus ~0.3 s of matmuls on the device
        loss, aux = toy.toy_loss(model, batch, rng)
        a = jnp.full((512, 512), jax.lax.stop_gradient(batch["x"]).mean() * 1e-3)
        a = jax.lax.fori_loop(0, 64, lambda i, a: jnp.tanh(a @ a), a)
        return loss + 0.0 * a.sum(), aux

    config = toy.toy_config(6)
    config.train.log_every = 2
    task = loop.Task(loss_fn=slow_loss)
    batches = toy.toy_batches(16, sleep=0.05)  # each batch comes while the last step runs
    loop.train_and_evaluate(config, tmp_path, task, toy.ToyMLP(rngs=nnx.Rngs(0)), batches)
    rows = [m for m in _metrics(tmp_path) if "loss" in m]
    assert rows[1]["examples_per_sec"] < 16 / 0.15  # the step is slower than the input
    assert rows[1]["input_wait_fraction"] < 0.05


def test_indivisible_accumulation_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="grad_accum_steps=3"):
        _run(tmp_path, steps=2, grad_accum_steps=3)


def test_inference_jit_compiles_with_its_options():
    """`inference_jit` takes jit arguments, computes what a plain jit computes, and its matmuls
    leave the YNNPACK fusions a plain CPU jit makes (its compile options reach XLA)."""

    def affine(scale, x, w):
        return jnp.tanh(x @ w * scale)

    x = jax.random.normal(jax.random.key(0), (64, 96))
    w = jax.random.normal(jax.random.key(1), (96, 32)) / 10
    plain = jax.jit(affine, static_argnums=0)
    ours = cpu_tuning.inference_jit(static_argnums=0)(affine)
    expected = np.tanh(np.asarray(x, np.float64) @ np.asarray(w, np.float64) * 0.5)
    np.testing.assert_allclose(ours(0.5, x, w), expected, atol=1e-5)
    assert ours.__name__ == "affine"

    def fusion_kinds(jitted) -> set[str]:
        text = jitted.lower(0.5, x, w).compile().as_text()
        return {kind for kind in ("__ynn_fusion", "__xnn_fusion") if kind in text}

    assert jax.default_backend() == "cpu"
    assert fusion_kinds(plain) == {"__ynn_fusion"}
    assert fusion_kinds(ours) == set()


def test_inference_jit_keeps_defaults_for_large_matmul_weights():
    """A program with a matmul weight of 2048 x 2048 (inside a scan) keeps XLA's defaults;
    the same program with 256 x 256 weights gets the inference options."""

    traces = []

    def chain(x, weights):  # weights: [L, D, D], applied in turn
        traces.append(x.shape)
        return jax.lax.scan(lambda h, w: (jnp.tanh(h @ w), None), x, weights)[0]

    ours = cpu_tuning.inference_jit(chain)
    for width, kinds in ((2048, {"__ynn_fusion"}), (256, set())):
        traces.clear()
        x = jnp.ones((4, width))
        weights = jnp.full((2, width, width), 1.0 / width)
        text = ours.lower(x, weights).compile().as_text()
        assert {k for k in ("__ynn_fusion", "__xnn_fusion") if k in text} == kinds, width
        np.testing.assert_allclose(ours(x, weights), np.tanh(np.tanh(1.0)), rtol=1e-5)
        np.testing.assert_allclose(ours(x + 0, weights), np.tanh(np.tanh(1.0)), rtol=1e-5)
        assert traces == [(4, width)], traces  # one trace serves the choice and every call
        traced = jax.make_jaxpr(chain)(x, weights)
        assert cpu_tuning.largest_matmul_weight(traced.jaxpr) == width * width


def test_dot_general_equations_list_every_matmul_a_call_runs():
    """A matmul outside a scan, two inside its 3-step body (one in a nested jit): each listed
    once, in program order, with how many times a call runs it."""

    def program(x, w, stacked):  # x: [4, 8], w: [8, 16], stacked: [3, 16, 16]
        def body(h, layer):
            return jax.jit(lambda a: a @ layer)(jnp.tanh(h @ layer)), None

        return jax.lax.scan(body, x @ w, stacked)[0]

    jaxpr = jax.make_jaxpr(program)(jnp.ones((4, 8)), jnp.ones((8, 16)), jnp.ones((3, 16, 16)))
    listed = [
        (tuple(v.aval.shape for v in eqn.invars), times)
        for eqn, times in flops.dot_general_equations(jaxpr.jaxpr)
    ]
    assert listed == [
        (((4, 8), (8, 16)), 1),
        (((4, 16), (16, 16)), 3),
        (((4, 16), (16, 16)), 3),
    ]
