"""LAMB / AdamW / schedules / lr scales against hand-written NumPy (float64) references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from squeezemobile_jax.training import optimizers, paths, schedules
from squeezemobile_jax.training.config import training_defaults

B1, B2, EPS, WD = 0.9, 0.999, 1e-6, 0.01


def _params(seed: int = 0) -> dict:
    r = np.random.default_rng(seed)
    return {
        "dense": {"kernel": r.normal(size=(3, 4)), "bias": r.normal(size=(4,))},
        "LayerNorm": {"scale": 1.0 + 0.1 * r.normal(size=(4,))},
        "embeddings": r.normal(size=(5, 3)),
        # Two layers stacked along axis 0: each slice is one layer's kernel.
        "layers": {"kernel": r.normal(size=(2, 3, 3)), "layer_norm_bias": r.normal(size=(2, 3))},
    }


def _grads(step: int) -> dict:
    r = np.random.default_rng(100 + step)
    p = _params()
    return {
        "dense": {"kernel": 3 * r.normal(size=(3, 4)), "bias": r.normal(size=(4,))},
        "LayerNorm": {"scale": r.normal(size=(4,))},
        "embeddings": r.normal(size=(5, 3)),
        "layers": {
            "kernel": r.normal(size=p["layers"]["kernel"].shape),
            "layer_norm_bias": r.normal(size=(2, 3)),
        },
    }


# Per-variable view as the original TF code sees it: name -> (array, is_excluded).
EXCLUDED = {"dense/bias", "LayerNorm/scale", "layers/layer_norm_bias"}


def _lr(step: int, peak: float, warmup: int, total: int, end: float) -> float:
    """BERT's create_optimizer: poly decay from step 0, warmup override."""
    if step < warmup:
        return peak * step / warmup
    frac = min(step, total) / total
    return (peak - end) * (1 - frac) + end


def _numpy_lamb(params: dict, steps: int, *, peak, warmup, total, end, clip, trust=True):
    """Independent float64 LAMB (MobileBERT lamb_optimizer.py) with stacked layers split."""
    flat = {k: np.array(v, np.float64) for k, v in _flatten(params).items()}
    # Split stacked params into per-layer variables, as the TF model stores them.
    variables = {}
    for name, value in flat.items():
        if name.startswith("layers/"):
            for i in range(value.shape[0]):
                variables[f"{name}#{i}"] = value[i].copy()
        else:
            variables[name] = value.copy()
    m = {k: np.zeros_like(v) for k, v in variables.items()}
    v_ = {k: np.zeros_like(v) for k, v in variables.items()}
    for t in range(steps):
        g_flat = _flatten(_grads(t))
        grads = {}
        for name, value in g_flat.items():
            if name.startswith("layers/"):
                for i in range(value.shape[0]):
                    grads[f"{name}#{i}"] = np.array(value[i], np.float64)
            else:
                grads[name] = np.array(value, np.float64)
        gnorm = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
        grads = {k: g * clip / max(gnorm, clip) for k, g in grads.items()}
        lr = _lr(t, peak, warmup, total, end)
        for k in variables:
            base = k.split("#")[0]
            excluded = base in EXCLUDED
            m[k] = B1 * m[k] + (1 - B1) * grads[k]
            v_[k] = B2 * v_[k] + (1 - B2) * grads[k] ** 2
            update = m[k] / (np.sqrt(v_[k]) + EPS)
            if not excluded:
                update = update + WD * variables[k]
            ratio = 1.0
            if trust and not excluded:
                w_norm, u_norm = np.linalg.norm(variables[k]), np.linalg.norm(update)
                ratio = w_norm / u_norm if (w_norm > 0 and u_norm > 0) else 1.0
            variables[k] = variables[k] - lr * ratio * update
    out = {}
    for name, value in flat.items():
        if name.startswith("layers/"):
            out[name] = np.stack([variables[f"{name}#{i}"] for i in range(value.shape[0])])
        else:
            out[name] = variables[name]
    return out


def _flatten(tree: dict) -> dict:
    return {
        paths.path_to_str(kp): np.asarray(x) for kp, x in jax.tree_util.tree_leaves_with_path(tree)
    }


def _opt_config(name: str, warmup: int = 2, total: int = 6, end_ratio: float = 0.1):
    cfg = training_defaults().optimizer
    cfg.name = name
    cfg.learning_rate = 0.05
    cfg.clip_norm = 1.0
    cfg.stacked_params = (("^layers/", 1),)
    cfg.schedule.warmup_steps = warmup
    cfg.schedule.decay_steps = total
    cfg.schedule.end_ratio = end_ratio
    return cfg


def _run(tx, params: dict, steps: int, lr_scales_fn=None):
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    state = tx.init(params)
    update = jax.jit(lambda g, s, p, t: tx.update(g, s, p, step=t))
    history = []
    for t in range(steps):
        grads = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), _grads(t))
        updates, state = update(grads, state, params, jnp.int32(t))
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        history.append((params, state))
    return params, state, history


@pytest.mark.parametrize("name", ["lamb", "adamw"])
def test_matches_numpy_reference(name):
    steps = 6
    opt = optimizers.build_optimizer(_opt_config(name), total_steps=steps)
    got, _, _ = _run(opt.tx, _params(), steps)
    want = _numpy_lamb(
        _params(), steps, peak=0.05, warmup=2, total=6, end=0.005, clip=1.0, trust=name == "lamb"
    )
    got = _flatten(got)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=1e-6, err_msg=k)
    # The run moved every parameter (so the comparison is not vacuous).
    start = _flatten(_params())
    for k in want:
        assert np.abs(want[k] - start[k]).max() > 1e-3, k


def test_schedule_values_by_hand():
    s = schedules.schedule_from_config(_opt_config("lamb", 4, 10, 0.5).schedule, 1.0, 10)
    # warmup 0, .25, .5, .75; then decay from step 0 over 10 steps to 0.5.
    want = [0.0, 0.25, 0.5, 0.75, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.5]
    np.testing.assert_allclose([float(s(t)) for t in range(12)], want, atol=1e-6)
    cfg = _opt_config("lamb", 2, 6, 0.0).schedule
    cfg.decay_from = "warmup_end"
    cfg.name = "warmup_poly"
    cfg.power = 2.0
    s = schedules.schedule_from_config(cfg, 1.0, 6)
    want = [0.0, 0.5, 1.0, 0.5625, 0.25, 0.0625, 0.0]
    np.testing.assert_allclose([float(s(t)) for t in range(7)], want, atol=1e-6)
    cfg.name = "warmup_constant"
    s = schedules.schedule_from_config(cfg, 2.0, 6)
    np.testing.assert_allclose([float(s(t)) for t in range(4)], [0, 1, 2, 2], atol=1e-6)


def test_weight_decay_mask_defaults():
    p = _params()
    mask = _flatten(
        paths.weight_decay_mask(p, num_stacked_axes=paths.stacked_axes(p, [("^layers/", 1)]))
    )
    assert {k for k, v in mask.items() if not v} == EXCLUDED
    # Without the stack rule the stacked (per-layer 1-D) bias is still excluded by its name.
    assert not _flatten(paths.weight_decay_mask(p, exclude=()))["dense/bias"]  # 1-D rule


def test_zero_lr_scale_freezes_params_and_moments_bitwise():
    """Scale 1 for two steps (moments become non-zero), then 0: nothing may change."""
    freeze_from = 2

    def scale(step, path):
        on = (step < freeze_from).astype(jnp.float32)
        if path == "dense/kernel":
            return on  # frozen from step 2
        if path == "layers/kernel":
            return jnp.stack([on, 3.0 * jnp.ones(())])  # layer 0 frozen, layer 1 at 3x
        return None

    opt = optimizers.build_optimizer(
        _opt_config("lamb"), total_steps=6, lr_scales=optimizers.per_path_lr_scales(scale)
    )
    _, _, hist = _run(opt.tx, _params(), 6)
    ref_p, ref_s = hist[freeze_from - 1]
    for p, s in hist[freeze_from:]:
        for tree_now, tree_ref in ((p, ref_p), (s[1].mu, ref_s[1].mu), (s[1].nu, ref_s[1].nu)):
            assert np.array_equal(tree_now["dense"]["kernel"], tree_ref["dense"]["kernel"])
            assert np.array_equal(tree_now["layers"]["kernel"][0], tree_ref["layers"]["kernel"][0])
        assert np.abs(np.asarray(ref_s[1].mu["dense"]["kernel"])).min() > 0  # non-trivial
        # Layer 1 and unscaled params keep training.
        assert not np.array_equal(p["layers"]["kernel"][1], ref_p["layers"]["kernel"][1])
        assert not np.array_equal(p["embeddings"], ref_p["embeddings"])


def test_lr_scale_multiplies_the_update():
    """A scale of 3 on one layer slice gives 3x the unscaled (NumPy) LAMB step there."""
    params = _params()

    def scale(step, path):
        return jnp.array([1.0, 3.0]) if path == "layers/kernel" else None

    cfg = _opt_config("lamb", warmup=0)
    opt = optimizers.build_optimizer(cfg, 6, optimizers.per_path_lr_scales(scale))
    got, _, _ = _run(opt.tx, params, 1)
    want = _numpy_lamb(params, 1, peak=0.05, warmup=0, total=6, end=0.005, clip=1.0)
    start = params["layers"]["kernel"]
    step_got = np.asarray(got["layers"]["kernel"]) - start
    step_want = want["layers/kernel"] - start
    np.testing.assert_allclose(step_got[0], step_want[0], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(step_got[1], 3.0 * step_want[1], rtol=1e-4, atol=1e-7)


def test_bad_lr_scale_shape_names_the_parameter():
    opt = optimizers.build_optimizer(
        _opt_config("lamb"),
        6,
        optimizers.per_path_lr_scales(lambda s, p: jnp.ones(3) if p == "embeddings" else None),
    )
    with pytest.raises(ValueError, match="embeddings"):
        _run(opt.tx, _params(), 1)
