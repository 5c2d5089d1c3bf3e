"""Model configs, parameter counts, scan vs unrolled, and the IB-BERT teacher vs NumPy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hf_reference import mask_with_holes, numpy_attention, padded_batch

from squeezemobile_jax import cpu_tuning
from squeezemobile_jax.models import (
    MobileBertConfig,
    SqueezeBertConfig,
    build_model,
    config_from_dict,
    get_model_config,
)
from squeezemobile_jax.models.flops import dot_general_equations, forward_flops_per_example
from squeezemobile_jax.models.ops import dropout, gelu_erf, random_bits, truncated_normal


def param_count(module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize(
    "name, expected",
    [
        # Published figures: SqueezeBertModel (with its pooler) 51,094,272 = the paper's 51.1M;
        # MobileBERT-family embeddings + encoder from the original configs.
        ("squeezebert-uncased", 51_094_272),
        ("mobilebert-uncased", 24_581_888),
        ("mobilebert-tiny", 15_485_696),
        ("ib-bert-large", 294_205_184),
    ],
)
def test_preset_parameter_counts(name, expected):
    model = nnx.eval_shape(lambda: build_model(get_model_config(name)))
    trunk = param_count(model.embeddings) + param_count(model.layers)
    if name.startswith("squeezebert"):
        trunk += param_count(model.pooler)
        assert abs(trunk - 51.09e6) <= 0.1e6
    assert trunk == expected


def test_bert_base_count():
    model = nnx.eval_shape(lambda: build_model(get_model_config("bert-base-uncased")))
    assert param_count(model) == 109_482_240  # BERT-base with pooler, vocab 30522


@pytest.mark.parametrize(
    "cls, fields, field",
    [
        (SqueezeBertConfig, dict(hidden_size=100, num_attention_heads=12), "num_attention_heads"),
        (SqueezeBertConfig, dict(hidden_size=96, num_attention_heads=4, q_groups=5), "q_groups"),
        (SqueezeBertConfig, dict(intermediate_size=3070), "intermediate_groups"),
        (SqueezeBertConfig, dict(embedding_size=128), "embedding_size"),
        (SqueezeBertConfig, dict(hidden_act="gelu_fast_typo"), "hidden_act"),
        (SqueezeBertConfig, dict(num_hidden_layers=0), "num_hidden_layers"),
        (SqueezeBertConfig, dict(hidden_dropout_prob=1.5), "hidden_dropout_prob"),
        (MobileBertConfig, dict(normalization_type="batch_norm"), "normalization_type"),
        (
            MobileBertConfig,
            dict(use_bottleneck=False, intra_bottleneck_size=128),
            "intra_bottleneck_size",
        ),
        (
            MobileBertConfig,
            dict(use_bottleneck=False, intra_bottleneck_size=None),
            "key_query_shared_bottleneck",
        ),
        (MobileBertConfig, dict(use_bottleneck_attention=True), "key_query_shared_bottleneck"),
        (MobileBertConfig, dict(intra_bottleneck_size=130), "num_attention_heads"),
        (MobileBertConfig, dict(embedding_size=1024), "embedding_size"),
        (MobileBertConfig, dict(num_feedforward_networks=0), "num_feedforward_networks"),
        (MobileBertConfig, dict(compute_dtype="float8"), "compute_dtype"),
    ],
)
def test_invalid_configs_name_the_field(cls, fields, field):
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        cls(**fields)


def test_config_dicts():
    config = get_model_config("mobilebert-tiny")
    assert config_from_dict(config.to_dict()) == config
    hf = config.to_hf_dict()
    assert "scan_layers" not in hf and hf["true_hidden_size"] == 128
    assert (
        config_from_dict({**hf, "transformers_version": "5", "architectures": []}, strict=False)
        == config
    )
    with pytest.raises(ValueError, match="typo_field"):
        config_from_dict({**config.to_dict(), "typo_field": 1})
    with pytest.raises(ValueError, match="model_type"):
        config_from_dict({"model_type": "bert"})
    # An HF config without a bottleneck keeps HF's (ignored) default intra_bottleneck_size.
    plain = config_from_dict(
        {"model_type": "mobilebert", "use_bottleneck": False, "intra_bottleneck_size": 128},
        strict=False,
    )
    assert plain.true_hidden_size == plain.hidden_size
    with pytest.raises(ValueError, match="unknown model preset"):
        get_model_config("mobilebert-huge")


@pytest.mark.parametrize("name", ["squeezebert-test", "mobilebert-test", "ib-bert-test"])
@pytest.mark.parametrize("deterministic", [True, False])
def test_scan_equals_unrolled(name, deterministic):
    config = get_model_config(name, hidden_dropout_prob=0.1)
    ids, mask, types = padded_batch(config.vocab_size)
    kwargs = dict(
        deterministic=deterministic,
        dropout_rng=jax.random.key(7),
        output_hidden_states=True,
        output_attentions=True,
        output_attention_scores=True,
    )
    outs = []
    for scan in (False, True):
        model = build_model(config.replace(scan_layers=scan), "pretraining", seed=3)
        outs.append(model(ids, mask, types, **kwargs))
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    if not deterministic:  # dropout really acted
        det = build_model(config, "pretraining", seed=3)(ids, mask, types)
        assert not np.allclose(det.prediction_logits, outs[0].prediction_logits)


def test_fused_attention_path_gradients(monkeypatch):
    # The accelerator path (tokens reordered so kept ones come first, keys masked by count,
    # outputs put back) gives the explicit path's gradients, for a mask with a hole and a
    # left-padded row. Deterministic: with dropout, a reordered row would draw other masks.
    config = get_model_config("mobilebert-test", scan_layers=True)
    ids, mask, types = padded_batch(config.vocab_size)
    mask = mask_with_holes(mask)
    weights = np.random.default_rng(0).standard_normal((*ids.shape, config.hidden_size))
    model = build_model(config, seed=3)
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(params):
        out = nnx.merge(graphdef, params)(ids, mask, types)
        return jnp.sum(out.last_hidden_state * weights) + jnp.sum(out.pooler_output)

    grads = {}
    for fused in (False, True):
        monkeypatch.setattr(cpu_tuning, "use_fused_attention", lambda fused=fused: fused)
        grads[fused] = jax.jit(jax.grad(loss))(params)
    scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads[False]))
    for a, b in zip(jax.tree.leaves(grads[False]), jax.tree.leaves(grads[True]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5 * scale)


def test_remat_and_bfloat16_run():
    config = get_model_config("mobilebert-test", remat=True, scan_layers=True)
    ids, mask, types = padded_batch(config.vocab_size)
    model = build_model(config, "pretraining")
    ref = model(ids, mask, types).prediction_logits
    bf16 = build_model(config.replace(compute_dtype="bfloat16"), "pretraining")
    out = bf16(ids, mask, types)
    assert out.encoder.last_hidden_state.dtype == jnp.bfloat16
    assert out.prediction_logits.dtype == jnp.float32
    assert np.max(np.abs(np.asarray(out.prediction_logits) - np.asarray(ref))) < 0.1


# ----------------------------------------------------------------- IB-BERT vs float64 NumPy
_erf = np.frompyfunc(math.erf, 1, 1)


def np_normal_cdf(x):
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def np_gelu(x):
    return x * np_normal_cdf(x)


def test_gelu_value_and_gradient_against_float64():
    """The exact GELU and its hand-written gradient, Phi(x) + x phi(x), in float64 NumPy."""
    x = np.linspace(-9.0, 9.0, 2001)
    phi = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    xs = jnp.asarray(x, jnp.float32)
    value, vjp = jax.vjp(gelu_erf, xs)
    (grad,) = vjp(jnp.full_like(xs, 3.0))
    assert np.max(np.abs(np.asarray(value, np.float64) - np_gelu(x))) < 2e-6
    assert np.max(np.abs(np.asarray(grad, np.float64) - 3.0 * (np_normal_cdf(x) + x * phi))) < 3e-6


def np_layer_norm(x, scale, bias, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def np_dense(x, dense):
    return x @ np.asarray(dense.kernel[...], np.float64) + np.asarray(dense.bias[...], np.float64)


def np_norm(x, norm):
    return np_layer_norm(
        x, np.asarray(norm.scale[...], np.float64), np.asarray(norm.bias[...], np.float64)
    )


def np_teacher_block(x, mask, layer, num_heads):
    """The original IB-BERT block: Q, K, V from the 512-d input x, 4 wide heads."""
    a = np_norm(np_dense(x, layer.bottleneck_input), layer.bottleneck_input_norm)
    b, t, _ = x.shape

    q, k, v = (
        np_dense(x, d).reshape(b, t, num_heads, -1) for d in (layer.query, layer.key, layer.value)
    )
    context = numpy_attention(q, k, v, mask).reshape(b, t, -1)
    h = np_norm(np_dense(context, layer.attention_output) + a, layer.attention_output_norm)
    for ffn in layer.ffn:
        h = np_norm(np_dense(np_gelu(np_dense(h, ffn.intermediate)), ffn.output) + h, ffn.norm)
    return np_norm(np_dense(h, layer.output_bottleneck) + x, layer.output_bottleneck_norm)


def np_teacher(ids, mask, types, model):
    emb = model.embeddings
    e = np.asarray(emb.word_embeddings.embedding[...], np.float64)[ids]
    zeros = np.zeros_like(e[:, :1])
    tri = np.concatenate(
        [np.concatenate([e[:, 1:], zeros], 1), e, np.concatenate([zeros, e[:, :-1]], 1)], -1
    )
    x = np_dense(tri, emb.embedding_transformation)
    x = x + np.asarray(emb.position_embeddings.embedding[...], np.float64)[: ids.shape[1]][None]
    x = x + np.asarray(emb.token_type_embeddings.embedding[...], np.float64)[types]
    hidden = [np_norm(x, emb.norm)]
    graphdef, state = nnx.split(model.layers)
    for i in range(model.config.num_hidden_layers):
        layer = nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], state))
        hidden.append(np_teacher_block(hidden[-1], mask.astype(np.float64), layer, 4))
    return np.stack(hidden)


def randomized(model, seed=0):
    """Every parameter random (norm scales near 1), so no mapping hides behind 0/1 values."""
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        noise = rng.standard_normal(var.shape).astype(np.float32)
        var[...] = jnp.asarray(1.0 + 0.1 * noise if path[-1] == "scale" else 0.05 * noise)
    return model


def test_ib_bert_teacher_matches_float64_numpy():
    config = get_model_config("ib-bert-test")
    assert config.attention_input_sizes == (config.hidden_size, config.hidden_size)
    model = randomized(build_model(config))
    # Q/K/V read the 64-d block input while attention runs 128 wide (4 heads of 32).
    assert model.layers.query.kernel.shape == (2, 64, 128)
    ids, mask, types = padded_batch(config.vocab_size)
    out = model(ids, mask, types, output_hidden_states=True)
    expected = np_teacher(ids, mask, types, model)
    assert np.max(np.abs(np.asarray(out.hidden_states, np.float64) - expected)) <= 1e-5
    # One layer on its own.
    graphdef, state = nnx.split(model.layers)
    layer0 = nnx.merge(graphdef, jax.tree.map(lambda a: a[0], state))
    x = np.random.default_rng(1).standard_normal((3, 12, 64)).astype(np.float32)
    ours = layer0(jnp.asarray(x), jnp.asarray(mask), None, deterministic=True, need_weights=False)
    ref = np_teacher_block(x.astype(np.float64), mask.astype(np.float64), layer0, 4)
    assert np.max(np.abs(np.asarray(ours.hidden, np.float64) - ref)) <= 1e-5


@pytest.mark.parametrize("rate, shape", [(0.1, (64, 12, 128, 128)), (0.3, (4000, 7))])
def test_dropout_rate_and_scale(rate, shape):
    """Dropped fraction within 5 binomial standard deviations of `rate`; kept values scaled by
    1 / (1 - rate) so the mean is preserved; masks under two keys, and of neighbouring elements
    along the first and the last axis, are independent (joint drop rate = rate**2)."""
    x = jnp.ones(shape)
    y = np.asarray(dropout(x, rate, jax.random.key(0), deterministic=False))
    n = y.size
    dropped = y == 0
    assert abs(dropped.mean() - rate) < 5 * math.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(y[~dropped], 1 / (1 - rate), rtol=1e-6)
    assert abs(y.mean() - 1.0) < 5 * math.sqrt(rate / (1 - rate) / n)

    def assert_independent(a: np.ndarray, b: np.ndarray) -> None:
        both = rate * rate
        assert abs((a & b).mean() - both) < 5 * math.sqrt(both * (1 - both) / a.size)

    assert_independent(dropped, np.asarray(dropout(x, rate, jax.random.key(1), False)) == 0)
    assert_independent(dropped[..., 1:], dropped[..., :-1])
    assert_independent(dropped[1:], dropped[:-1])
    assert dropout(x, rate, None, deterministic=True) is x


def test_random_bits_are_uniform():
    """Every bit of `random_bits` is 1 half the time, and the top and bottom bytes fill 256
    buckets evenly (chi-square below its mean + 5 standard deviations)."""
    bits = np.asarray(random_bits(jax.random.key(3), (512, 1000)))
    n = bits.size
    for k in range(32):
        assert abs(((bits >> k) & 1).mean() - 0.5) < 5 * math.sqrt(0.25 / n)
    for byte in (bits >> 24, bits & 0xFF):
        counts = np.bincount(byte.ravel(), minlength=256)
        chi2 = ((counts - n / 256) ** 2 / (n / 256)).sum()
        assert chi2 < 255 + 5 * math.sqrt(2 * 255)


def truncated_normal_cdf(x: np.ndarray, stddev: float) -> np.ndarray:
    """CDF of N(0, stddev**2) cut at +-2 stddev (TF's truncated_normal_initializer)."""
    below, above = np_normal_cdf(np.array([-2.0, 2.0]))
    return (np_normal_cdf(x / stddev) - below) / (above - below)


def test_truncated_normal_initializer_is_tf_truncated_normal():
    """Values lie in (-2 stddev, 2 stddev) and follow the truncated normal's CDF (Kolmogorov-
    Smirnov distance below its 0.1% critical value); mean 0 and standard deviation
    0.8796 stddev, as TF's initializer gives (not rescaled to stddev)."""
    std = 0.02
    x = np.sort(np.asarray(truncated_normal(std)(jax.random.key(5), (1000, 500))).ravel())
    n = x.size
    assert -2 * std < x[0] < -1.99 * std and 1.99 * std < x[-1] < 2 * std
    rank = np.arange(0, n, n // 20000)  # the CDF at 20,000 order statistics
    cdf = truncated_normal_cdf(x[rank], std)
    ks = max(np.abs((rank + 1) / n - cdf).max(), np.abs(rank / n - cdf).max())
    assert ks < 1.95 / math.sqrt(n), ks
    # Standard deviation of the truncated normal: sqrt(1 - 2 * 2 phi(2) / (Phi(2) - Phi(-2))).
    phi2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    expected_std = std * math.sqrt(1 - 4 * phi2 / math.erf(math.sqrt(2.0)))
    assert abs(expected_std / std - 0.87962566) < 1e-7
    assert abs(x.mean()) < 5 * expected_std / math.sqrt(n)
    assert abs(x.std() / expected_std - 1) < 5 * math.sqrt(0.5 / n)


def test_built_model_initialisation():
    """Kernels and embeddings of a fresh model are truncated normal(initializer_range), a
    fresh draw per parameter and per stacked layer; biases 0, LayerNorm scales 1."""
    config = get_model_config("mobilebert-test")
    state = nnx.state(build_model(config, "pretraining"), nnx.Param)
    std = config.initializer_range
    random_leaves = []
    for path, value in jax.tree_util.tree_leaves_with_path(state):
        name = jax.tree_util.keystr(path)
        value = np.asarray(value)
        if "bias" in name:
            assert (value == 0).all(), name
        elif "scale" in name:
            assert (value == 1).all(), name
        else:
            assert np.abs(value).max() < 2 * std, name
            random_leaves.append((name, value))
    pooled = np.concatenate([v.ravel() for _, v in random_leaves])
    assert abs(pooled.std() / (0.8796 * std) - 1) < 0.05
    firsts = [v.ravel()[:16] for _, v in random_leaves]
    assert len({f.tobytes() for f in firsts}) == len(firsts)  # no two parameters start alike
    stacked = [v for name, v in random_leaves if "layers" in name and v.shape[0] > 1]
    assert stacked and all(not np.array_equal(v[0], v[1]) for v in stacked)


@pytest.mark.parametrize("preset", ["squeezebert-test", "mobilebert-test", "ib-bert-test"])
def test_forward_flops_count_the_matmuls_the_program_runs(preset):
    """`forward_flops_per_example` (a formula over parameter shapes) equals the matmul FLOPs
    of the traced pretraining forward pass (2 per multiply-add, from each dot_general's
    shapes, scan bodies once per layer)."""
    config = get_model_config(preset)
    model = build_model(config, "pretraining")
    batch, length, positions = 2, 16, 3
    ids = jnp.ones((batch, length), jnp.int32)
    where = jnp.tile(jnp.arange(positions), (batch, 1))

    def forward(model):
        return model(ids, masked_lm_positions=where).prediction_logits

    jaxpr = jax.make_jaxpr(forward)(model).jaxpr
    counted = 0
    for eqn, times in dot_general_equations(jaxpr):
        (lhs_contract, _), _ = eqn.params["dimension_numbers"]
        lhs, out = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
        counted += times * 2 * math.prod(out) * math.prod(lhs[d] for d in lhs_contract)
    assert counted == batch * forward_flops_per_example(config, length, positions)
