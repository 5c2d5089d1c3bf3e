"""Parity of every head of both families with transformers' PyTorch classes (float32)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from hf_reference import (
    hf_model,
    mask_with_holes,
    numpy_attention,
    ours_from_hf,
    padded_batch,
    torch_inputs,
)

from squeezemobile_jax import cpu_tuning
from squeezemobile_jax.hub.convert import load_hf_state_dict
from squeezemobile_jax.models import attention as attention_module
from squeezemobile_jax.models import build_model, get_model_config, with_layer_list
from squeezemobile_jax.training import inference_jit

ATOL = 1e-4


def max_err(ours, reference) -> float:
    return float(np.max(np.abs(np.asarray(ours, np.float64) - np.asarray(reference, np.float64))))


def assert_trunk_parity(config, enc, ref_out, mask):
    """Every hidden state and every attention map of our EncoderOutput vs HF's outputs."""
    ref_hidden = np.stack([h.numpy() for h in ref_out.hidden_states])
    assert enc.hidden_states.shape == ref_hidden.shape
    assert max_err(enc.hidden_states, ref_hidden) <= ATOL
    ref_att = np.stack([a.numpy() for a in ref_out.attentions])
    if config.model_type == "squeezebert":
        # HF SqueezeBERT returns the masked pre-softmax scores; compare them at real keys,
        # and check that masked keys carry the large negative mask value in both.
        ours = np.asarray(enc.attention_scores)
        keys = mask[None, :, None, None, :].astype(bool) & np.ones(ours.shape, bool)
        assert max_err(ours[keys], ref_att[keys]) <= ATOL
        assert np.all(ours[~keys] < -1e30) and np.all(ref_att[~keys] < -1e30)
    else:
        assert max_err(enc.attentions, ref_att) <= ATOL


def run_parity(config, head, *, extra=None, num_choices=None):
    reference = hf_model(config, head)
    ours, report = ours_from_hf(config, head, reference, extra)
    assert not report["missing"], report
    ids, mask, types = padded_batch(config.vocab_size)
    if num_choices:
        ids, mask, types = (
            np.stack([x, np.roll(x, 1, axis=0)], axis=1) for x in (ids, mask, types)
        )
    ref = reference(
        **torch_inputs(ids, mask, types), output_hidden_states=True, output_attentions=True
    )
    out = ours(
        ids,
        mask,
        types,
        output_hidden_states=True,
        output_attentions=True,
        output_attention_scores=True,
    )
    flat_mask = mask.reshape(-1, mask.shape[-1])
    return ours, reference, out, ref, (ids, mask, types), flat_mask


SQUEEZE_SMALL = get_model_config("squeezebert-test")
MOBILE_SMALL = get_model_config("mobilebert-test")
SMALL = {"squeezebert": SQUEEZE_SMALL, "mobilebert": MOBILE_SMALL}
CLASSIFIER_HEADS = ["sequence_classification", "token_classification", "question_answering"]


@pytest.mark.parametrize("family", ["squeezebert", "mobilebert"])
@pytest.mark.parametrize("head", ["base", "masked_lm", *CLASSIFIER_HEADS])
def test_head_parity(family, head):
    config = SMALL[family].replace(num_labels=2 if head == "question_answering" else 3)
    ours, ref_model, out, ref, _, mask = run_parity(config, head)
    enc = out if head == "base" else out.encoder
    assert_trunk_parity(config, enc, ref, mask)
    if head == "base":
        assert max_err(out.pooler_output, ref.pooler_output) <= ATOL
    elif head == "question_answering":
        assert max_err(out.start_logits, ref.start_logits) <= ATOL
        assert max_err(out.end_logits, ref.end_logits) <= ATOL
    else:
        assert out.logits.shape == tuple(ref.logits.shape)
        assert max_err(out.logits, ref.logits) <= ATOL


@pytest.mark.parametrize("family", ["squeezebert", "mobilebert"])
@pytest.mark.parametrize("layout", ["right_padded", "holes"])
def test_fused_attention_path_parity(family, layout, monkeypatch):
    # Accelerators run attention through jax.nn.dot_product_attention when no maps are asked
    # for, with the mask as key lengths; here the same call runs on the CPU (XLA's
    # implementation) against HF, also for masks whose kept tokens do not come first.
    monkeypatch.setattr(cpu_tuning, "use_fused_attention", lambda: True)
    calls = []
    fused = jax.nn.dot_product_attention
    monkeypatch.setattr(
        jax.nn, "dot_product_attention", lambda *a, **k: calls.append(k) or fused(*a, **k)
    )
    config = SMALL[family]
    reference = hf_model(config, "base")
    ours, _ = ours_from_hf(config, "base", reference)
    ids, mask, types = padded_batch(config.vocab_size)
    if layout == "holes":
        mask = mask_with_holes(mask)
    ref = reference(**torch_inputs(ids, mask, types), output_hidden_states=True)
    out = ours(ids, mask, types, output_hidden_states=True)
    assert len(calls) == config.num_hidden_layers
    assert all(k["implementation"] == "xla" for k in calls)  # float32 on the CPU
    ref_hidden = np.stack([h.numpy() for h in ref.hidden_states])
    assert max_err(out.hidden_states, ref_hidden) <= ATOL
    assert max_err(out.last_hidden_state, ref.last_hidden_state) <= ATOL
    assert max_err(out.pooler_output, ref.pooler_output) <= ATOL


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_fused_attention_kernel_choice(dtype, monkeypatch, caplog):
    # On a CUDA GPU 16-bit inputs ask for cuDNN's kernels (jax.nn.dot_product_attention would
    # otherwise run XLA's unfused attention); float32 asks for XLA's. Here the backend claims
    # to be a GPU, so the cuDNN attempt fails ("cuDNN is not detected") and falls back.
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    attention_module._warn_unfused.cache_clear()  # the warning is logged once per reason
    implementations = []
    fused = jax.nn.dot_product_attention
    monkeypatch.setattr(
        jax.nn,
        "dot_product_attention",
        lambda *a, **k: implementations.append(k["implementation"]) or fused(*a, **k),
    )
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 8, 2, 16)).astype(np.float32) for _ in range(3))
    mask = np.array([[1] * 8, [1] * 5 + [0] * 3], np.int32)
    with caplog.at_level("WARNING", logger=attention_module.__name__):
        out = attention_module.fused_attention(
            *(jax.numpy.asarray(x, dtype) for x in (q, k, v)), mask
        )
    expected = ["cudnn", "xla"] if dtype == "bfloat16" else ["xla"]
    assert implementations == expected
    assert out.dtype == dtype
    tolerance = 3e-2 if dtype == "bfloat16" else 1e-5
    assert max_err(out, numpy_attention(q, k, v, mask)) <= tolerance
    if dtype == "bfloat16":
        assert "cuDNN is not detected" in caplog.text


@pytest.mark.parametrize("family", ["squeezebert", "mobilebert"])
@pytest.mark.parametrize("problem_type", ["regression", "multi_label_classification"])
def test_sequence_classification_problem_types(family, problem_type):
    num_labels = 1 if problem_type == "regression" else 4
    config = SMALL[family].replace(num_labels=num_labels, problem_type=problem_type)
    _, _, out, ref, _, _ = run_parity(config, "sequence_classification")
    assert out.logits.shape == (3, num_labels)
    assert max_err(out.logits, ref.logits) <= ATOL


@pytest.mark.parametrize("family", ["squeezebert", "mobilebert"])
def test_multiple_choice_parity(family):
    _, _, out, ref, _, mask = run_parity(SMALL[family], "multiple_choice", num_choices=2)
    assert out.logits.shape == (3, 2)
    assert max_err(out.logits, ref.logits) <= ATOL
    assert_trunk_parity(SMALL[family], out.encoder, ref, mask)


def _nsp_extra(config, seed=3):
    g = np.random.default_rng(seed)
    return {
        "cls.seq_relationship.weight": (0.05 * g.standard_normal((2, config.hidden_size))).astype(
            np.float32
        ),
        "cls.seq_relationship.bias": (0.05 * g.standard_normal(2)).astype(np.float32),
    }


@pytest.mark.parametrize("family", ["squeezebert", "mobilebert"])
def test_pretraining_and_masked_positions(family):
    """MLM logits (everywhere and gathered at masked_lm_positions) and NSP/SOP logits."""
    config = SMALL[family]
    # HF has no SqueezeBERT pretraining class: its reference is the masked LM plus the SOP
    # head applied by hand to HF's pooled output (as the published checkpoint is used).
    extra = _nsp_extra(config) if family == "squeezebert" else None
    ours, ref_model, out, ref, (ids, mask, types), _ = run_parity(
        config, "pretraining", extra=extra
    )
    ref_mlm = ref.logits if family == "squeezebert" else ref.prediction_logits
    assert max_err(out.prediction_logits, ref_mlm) <= ATOL
    if family == "squeezebert":
        pooled = ref_model.transformer(**torch_inputs(ids, mask, types)).pooler_output.numpy()
        ref_nsp = (
            pooled @ extra["cls.seq_relationship.weight"].T + extra["cls.seq_relationship.bias"]
        )
    else:
        ref_nsp = ref.seq_relationship_logits
    assert max_err(out.seq_relationship_logits, ref_nsp) <= ATOL
    positions = np.array([[1, 3, 0], [2, 2, 8], [4, 0, 0]], np.int32)
    gathered = ours(ids, mask, types, masked_lm_positions=positions).prediction_logits
    expected = np.take_along_axis(np.asarray(ref_mlm), positions[..., None], axis=1)
    assert gathered.shape == (3, 3, config.vocab_size)
    assert max_err(gathered, expected) <= ATOL

    # Prediction and evaluation run a view holding one module per layer: same outputs, and
    # the model itself keeps its stacked layers.
    view = with_layer_list(ours)
    assert isinstance(view.backbone.layers, nnx.List)
    assert len(view.backbone.layers) == config.num_hidden_layers
    assert not isinstance(ours.backbone.layers, nnx.List)
    assert ours.backbone.layers.query.kernel.shape[0] == config.num_hidden_layers

    @inference_jit(static_argnums=0)
    def forward(graphdef, state, ids, mask, types):
        out = nnx.merge(graphdef, state)(ids, mask, types)
        return out.prediction_logits, out.seq_relationship_logits

    mlm, nsp = forward(*nnx.split(view), ids, mask, types)
    assert max_err(mlm, ref_mlm) <= ATOL
    assert max_err(nsp, ref_nsp) <= ATOL
    scanned = build_model(config.replace(scan_layers=True), "pretraining")
    assert not isinstance(with_layer_list(scanned).backbone.layers, nnx.List)


@pytest.mark.parametrize("family", ["squeezebert", "mobilebert"])
@pytest.mark.parametrize("scan", [True, False])
def test_masked_lm_gradient_parity(family, scan):
    """Every parameter's gradient of a masked-LM loss (tied decoder included) vs PyTorch
    autograd, with the layers scanned and unrolled (the two assemble stacked gradients
    differently). HF's gradients go through the checkpoint converter into our layout."""
    config = SMALL[family].replace(scan_layers=scan)
    reference = hf_model(config, "masked_lm")
    ours, report = ours_from_hf(config, "masked_lm", reference)
    assert not report["missing"], report
    ids, mask, types = padded_batch(config.vocab_size)
    weights = np.random.default_rng(1).standard_normal((*ids.shape, config.vocab_size))
    # Padded positions stay out of the loss, as in training.
    weights = (weights * mask[..., None]).astype(np.float32)
    with torch.enable_grad():
        logits = reference(**torch_inputs(ids, mask, types)).logits
        (logits * torch.from_numpy(weights)).sum().backward()
    hf_grads = {  # tied tensors appear under each key; the unused pooler has no gradient
        key: np.zeros(tensor.shape, np.float32) if tensor.grad is None else tensor.grad.numpy()
        for key, tensor in reference.state_dict(keep_vars=True).items()
        if isinstance(tensor, torch.nn.Parameter)
    }
    expected = build_model(config, "masked_lm")
    assert not load_hf_state_dict(expected, hf_grads)["missing"]
    graphdef, params = nnx.split(ours, nnx.Param)

    def loss(params):
        return jnp.sum(nnx.merge(graphdef, params)(ids, mask, types).logits * weights)

    grads = nnx.to_flat_state(jax.jit(jax.grad(loss))(params))
    want = dict(nnx.to_flat_state(nnx.state(expected, nnx.Param)))
    assert len(grads) == len(want)
    for path, grad in grads:
        grad, ref_grad = np.asarray(grad[...]), np.asarray(want[path][...])
        if path[-2:] == ("word_embeddings", "embedding"):
            # PyTorch's embedding never updates its padding row; the original TF models, like
            # ours, do: MobileBERT's trigram input feeds the padding vector into the last real
            # token of a padded row. The other rows must agree.
            pad = config.pad_token_id
            grad, ref_grad = np.delete(grad, pad, axis=0), np.delete(ref_grad, pad, axis=0)
        scale = max(float(np.max(np.abs(ref_grad))), 1.0)
        assert max_err(grad, ref_grad) <= 1e-4 * scale, path


def test_next_sentence_parity_mobilebert():
    _, _, out, ref, _, _ = run_parity(MOBILE_SMALL, "next_sentence")
    assert max_err(out.logits, ref.logits) <= ATOL


def test_next_sentence_parity_squeezebert():
    extra = _nsp_extra(SQUEEZE_SMALL)
    ours, ref_model, out, ref, (ids, mask, types), _ = run_parity(
        SQUEEZE_SMALL, "next_sentence", extra=extra
    )
    pooled = ref_model.transformer(**torch_inputs(ids, mask, types)).pooler_output.numpy()
    expected = pooled @ extra["cls.seq_relationship.weight"].T + extra["cls.seq_relationship.bias"]
    assert max_err(out.logits, expected) <= ATOL


SQUEEZE_ODD = [
    dict(q_groups=1, k_groups=1, v_groups=1, intermediate_groups=1, output_groups=1),
    dict(
        q_groups=2,
        k_groups=3,
        v_groups=6,
        post_attention_groups=2,
        intermediate_groups=3,
        output_groups=6,
    ),
    dict(
        q_groups=6,
        k_groups=6,
        v_groups=6,
        post_attention_groups=6,
        intermediate_groups=6,
        output_groups=3,
        hidden_act="relu",
    ),
]
MOBILE_ODD = [
    dict(
        use_bottleneck_attention=True, key_query_shared_bottleneck=False, num_feedforward_networks=2
    ),  # MobileBERT_TINY
    dict(
        num_feedforward_networks=1,
        normalization_type="layer_norm",
        hidden_act="gelu",
        classifier_activation=True,
    ),
    dict(trigram_input=False, classifier_activation=True),
    dict(trigram_input=False, embedding_size=64, num_feedforward_networks=3),
    # Trigram input exactly hidden_size wide: the original (and HF) still transform it.
    dict(hidden_size=48, embedding_size=16),
    dict(
        use_bottleneck=False,
        intra_bottleneck_size=None,
        key_query_shared_bottleneck=False,
        normalization_type="layer_norm",
        hidden_act="gelu",
        classifier_activation=True,
    ),
]


@pytest.mark.parametrize("overrides", SQUEEZE_ODD)
def test_squeezebert_odd_settings(overrides):
    config = SQUEEZE_SMALL.replace(**overrides)
    _, _, out, ref, _, mask = run_parity(config, "sequence_classification")
    assert_trunk_parity(config, out.encoder, ref, mask)
    assert max_err(out.logits, ref.logits) <= ATOL


@pytest.mark.parametrize("overrides", MOBILE_ODD)
def test_mobilebert_odd_settings(overrides):
    config = MOBILE_SMALL.replace(**overrides)
    _, _, out, ref, _, mask = run_parity(config, "pretraining")
    assert_trunk_parity(config, out.encoder, ref, mask)
    assert max_err(out.prediction_logits, ref.prediction_logits) <= ATOL
    assert max_err(out.seq_relationship_logits, ref.seq_relationship_logits) <= ATOL


@pytest.mark.slow
@pytest.mark.parametrize("name", ["squeezebert-uncased", "mobilebert-uncased"])
def test_full_size_trunk_parity(name):
    """The published architectures at full size (random weights, short padded batch)."""
    config = get_model_config(name)
    reference = hf_model(config, "base")
    # Full-size random weights at HF's own scale keep activations in a realistic range.
    torch.manual_seed(0)
    reference.apply(reference._init_weights)
    ours, report = ours_from_hf(config, "base", reference)
    assert not report["missing"]
    ids, mask, types = padded_batch(config.vocab_size, lengths=(24, 17))
    ref = reference(
        **torch_inputs(ids, mask, types), output_hidden_states=True, output_attentions=True
    )
    out = ours(
        ids,
        mask,
        types,
        output_hidden_states=True,
        output_attentions=True,
        output_attention_scores=True,
    )
    assert_trunk_parity(config, out, ref, mask)
    assert max_err(out.pooler_output, ref.pooler_output) <= ATOL
    # Compiled as prediction and evaluation compile it (other matmul kernels on CPU than a
    # plain jit), with the layers unrolled and scanned, on the padded batch and on one
    # unpadded length-128 sequence (the latency benchmark's shape).
    single = padded_batch(config.vocab_size, lengths=(128,))
    ref_single = reference(**torch_inputs(*single))

    @inference_jit(static_argnums=0)
    def forward(graphdef, state, ids, mask, types):
        return nnx.merge(graphdef, state)(ids, mask, types)

    other_mode, _ = ours_from_hf(
        config.replace(scan_layers=not config.scan_layers), "base", reference
    )
    for model in (ours, other_mode):
        graphdef, state = nnx.split(with_layer_list(model))  # as prediction runs it
        scan = model.config.scan_layers
        for inputs, expected in ((ids, mask, types), ref), (single, ref_single):
            got = forward(graphdef, state, *inputs)
            assert max_err(got.last_hidden_state, expected.last_hidden_state) <= ATOL, scan
            assert max_err(got.pooler_output, expected.pooler_output) <= ATOL, scan
