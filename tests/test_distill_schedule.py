"""Distillation plan, per-layer learning-rate scales and loss gates against the formulas
written out by hand; the stage-2 optimizer restart."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from squeezemobile_jax.models import build_model, get_model_config
from squeezemobile_jax.tasks.distill import default_config
from squeezemobile_jax.tasks.distill import schedule as ds
from squeezemobile_jax.training import build_optimizer, path_to_str, per_path_lr_scales


def plan(strategy="progressive", **kw) -> ds.DistillPlan:
    args = dict(strategy=strategy, num_layers=4, stage1_steps=40, stage2_steps=7)
    args["steps_per_layer"] = 10 if strategy == "progressive" else 0
    if strategy == "auxiliary":
        args["stage1_steps"] = 0
    args.update(kw)
    return ds.DistillPlan(**args)


def expected_background(t: int, n: int) -> float:
    return min(10.0 * t / n, 0.9 + 0.1 * math.sqrt(1.0 - t / n))


def expected_scales(step: int, spl: int, layers: int, earlier: float) -> list[float]:
    """The original layer-wise warmup: lr x 3 x background x {1 in phase, r before, 0 after}."""
    phase, t = step // spl, step % spl
    bg = expected_background(t, spl)
    return [
        3 * bg if i == phase else (3 * bg * earlier if i < phase else 0.0) for i in range(layers)
    ]


def test_background_values():
    got = np.asarray([ds.background(t, 100) for t in (0, 5, 10, 50, 99)])
    want = [0.0, 0.5, 0.9 + 0.1 * math.sqrt(0.9), 0.9 + 0.1 * math.sqrt(0.5), 0.91]
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("freeze", [False, True])
def test_progressive_scales_and_gates(freeze):
    p = plan(earlier_layer_ratio=0.0 if freeze else 0.1)
    for step in (0, 1, 3, 9, 10, 11, 17, 20, 25, 30, 31, 39):
        want = expected_scales(step, 10, 4, 0.0 if freeze else 0.1)
        np.testing.assert_allclose(np.asarray(ds.layer_lr_scales(step, p)), want, rtol=1e-6)
        # The original gates layer l for global steps in (10 l, 10 (l + 1)]: none at step 0.
        want_gates = np.eye(4)[(step - 1) // 10] if step > 0 else np.zeros(4)
        np.testing.assert_array_equal(np.asarray(ds.layer_gates(step, p)), want_gates)
        assert p.stage(step) == 1 and p.phase(step) == step // 10 + 1
    # Earlier layers train at 0.3x the base rate (x background), later ones not at all.
    bg = 0.9 + 0.1 * math.sqrt(0.5)  # step 25: 5 of 10 steps into layer 3's phase
    np.testing.assert_allclose(
        np.asarray(ds.layer_lr_scales(25, p)),
        [0 if freeze else 0.3 * bg, 0 if freeze else 0.3 * bg, 3 * bg, 0],
        rtol=1e-6,
    )
    assert p.stage(40) == 2 and p.phase(40) == 0 and p.total_steps == 47


def test_joint_scales_cover_every_layer_over_one_phase():
    p = plan("joint", stage1_steps=50)
    for step in (0, 2, 5, 30, 49):
        bg = expected_background(step, 50)
        np.testing.assert_allclose(np.asarray(ds.layer_lr_scales(step, p)), [3 * bg] * 4, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(ds.layer_gates(step, p)), np.ones(4))
        assert p.phase(step) == 0


def test_auxiliary_has_no_stage_one():
    p = plan("auxiliary")
    assert p.stage(0) == 2 and p.total_steps == 7
    np.testing.assert_array_equal(np.asarray(ds.layer_gates(3, p)), np.ones(4))
    with pytest.raises(ValueError, match="auxiliary"):
        plan("auxiliary", stage1_steps=5)


def test_scale_tree_on_the_student_parameters():
    """Per parameter: [L] formula values for the stacked blocks, 0 for everything else."""
    config = get_model_config("mobilebert-test", num_hidden_layers=4)
    model = nnx.eval_shape(lambda: build_model(config, "pretraining"))
    params = nnx.state(model, nnx.Param)
    p = plan()
    scales_fn = per_path_lr_scales(ds.stage1_scale_fn(p))
    paths = jax.tree_util.tree_leaves_with_path(params)
    n_layer = sum(path_to_str(kp).startswith("backbone/layers/") for kp, _ in paths)
    assert n_layer > 10 and len(paths) - n_layer >= 10  # blocks, embeddings and heads
    for step in (4, 13, 22, 36):
        tree = jax.jit(scales_fn)(jnp.int32(step), params)
        want = expected_scales(step, 10, 4, 0.1)
        for (kp, _), scale in zip(paths, jax.tree.leaves(tree)):
            name = path_to_str(kp)
            if name.startswith("backbone/layers/"):
                np.testing.assert_allclose(np.asarray(scale), want, rtol=1e-6, err_msg=name)
            else:
                assert np.asarray(scale).shape == () and float(scale) == 0.0, name


def test_plan_from_config_and_description():
    c = default_config()
    c.distill.stage1.steps_per_layer = 5
    c.distill.stage2.num_steps = 9
    p = ds.DistillPlan.from_config(c.distill, 24)
    assert (p.stage1_steps, p.total_steps, p.earlier_layer_ratio) == (120, 129, 0.1)
    c.distill.stage1.freeze_earlier_layers = True
    assert ds.DistillPlan.from_config(c.distill, 24).earlier_layer_ratio == 0.0
    c.distill.strategy = "joint"
    c.distill.stage1.joint_steps = 30
    assert ds.DistillPlan.from_config(c.distill, 24).stage1_steps == 30
    meta = p.describe(11)  # 11 steps done: the last one, step 10, is layer 3's first
    assert (meta["step"], meta["stage"], meta["phase"]) == (11, 1, 3)
    assert p.describe(121)["stage"] == 2 and meta["plan"] == p.to_dict()
    with pytest.raises(ValueError, match="strategy"):
        ds.DistillPlan("layerwise", 4, 4, 4)


def test_restart_at_gives_fresh_moments_and_a_schedule_from_the_stage_start():
    cfg = ml_collections.ConfigDict(
        {
            "name": "lamb",
            "learning_rate": 1e-2,
            "schedule": {"name": "warmup_poly", "warmup_steps": 2, "decay_steps": 10},
        }
    )
    inner = build_optimizer(cfg, 10)
    tx = ds.restart_at(inner.tx, 100)
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)}
    grads = {"w": jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)}
    stale = jax.tree.map(lambda x: x + 5.0, inner.tx.init(params))  # stage-1 moments
    up, state = tx.update(grads, stale, params, step=jnp.int32(100))
    ref_up, ref_state = inner.tx.update(grads, inner.tx.init(params), params, step=jnp.int32(0))
    # At step 100 the update is the inner optimizer's very first one: lr 0 at warmup step 0.
    np.testing.assert_array_equal(np.asarray(up["w"]), np.zeros((3, 4)))
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Later steps keep the state and see step - 100 (warmup lr 1e-2 * 1/2 at local step 1).
    up2, _ = tx.update(grads, state, params, step=jnp.int32(101))
    ref2, _ = inner.tx.update(grads, ref_state, params, step=jnp.int32(1))
    np.testing.assert_array_equal(np.asarray(up2["w"]), np.asarray(ref2["w"]))
    assert np.abs(np.asarray(up2["w"])).max() > 0
