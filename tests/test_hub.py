"""HF directory interop: round trips, transformers loading our exports, file formats."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from hf_reference import hf_model, padded_batch, torch_inputs

from squeezemobile_jax.hub import from_hf_pretrained, save_hf_pretrained
from squeezemobile_jax.models import build_model, get_model_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def params(model):
    return {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def assert_same_params(a, b):
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert pa[k].dtype == pb[k].dtype and np.array_equal(pa[k], pb[k]), k


@pytest.mark.parametrize(
    "name, head",
    [
        ("squeezebert-test", "pretraining"),
        ("squeezebert-test", "sequence_classification"),
        ("mobilebert-test", "pretraining"),
        ("mobilebert-test", "question_answering"),
        ("mobilebert-test", "multiple_choice"),
        ("ib-bert-test", "pretraining"),
    ],
)
def test_round_trip_is_exact(tmp_path, name, head):
    model = build_model(get_model_config(name, num_labels=3), head, seed=5)
    save_hf_pretrained(model, str(tmp_path))
    loaded = from_hf_pretrained(str(tmp_path))
    assert type(loaded) is type(model) or name.startswith("squeezebert")
    if name.startswith("squeezebert") and head == "pretraining":
        # HF has no SqueezeBERT pretraining class: the export is a masked LM carrying the SOP
        # head, as the published checkpoint; asking for the pretraining head restores it all.
        loaded = from_hf_pretrained(str(tmp_path), head="pretraining")
    assert loaded.config == model.config
    assert_same_params(model, loaded)


@pytest.mark.parametrize(
    "name, head, hf_class",
    [
        ("squeezebert-test", "masked_lm", "SqueezeBertForMaskedLM"),
        ("squeezebert-test", "sequence_classification", "SqueezeBertForSequenceClassification"),
        ("mobilebert-test", "pretraining", "MobileBertForPreTraining"),
        ("mobilebert-tiny", "token_classification", "MobileBertForTokenClassification"),
    ],
)
def test_transformers_loads_our_export(tmp_path, name, head, hf_class):
    overrides = dict(num_hidden_layers=2) if name == "mobilebert-tiny" else {}
    model = build_model(get_model_config(name, **overrides), head, seed=1)
    save_hf_pretrained(model, str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == [hf_class]
    hf = getattr(transformers, hf_class).from_pretrained(str(tmp_path)).eval()
    ids, mask, types = padded_batch(model.config.vocab_size)
    with torch.no_grad():
        ref = hf(**torch_inputs(ids, mask, types))
    out = model(ids, mask, types)
    if head == "pretraining":
        pairs = [
            (out.prediction_logits, ref.prediction_logits),
            (out.seq_relationship_logits, ref.seq_relationship_logits),
        ]
    else:
        pairs = [(out.logits, ref.logits)]
    for ours, theirs in pairs:
        assert np.max(np.abs(np.asarray(ours) - theirs.numpy())) <= 1e-4


def test_loads_fp16_safetensors_and_pytorch_bin(tmp_path):
    config = get_model_config("squeezebert-test")
    reference = hf_model(config, "sequence_classification")
    ids, mask, types = padded_batch(config.vocab_size)
    half_dir, bin_dir = tmp_path / "fp16", tmp_path / "bin"
    reference.half().save_pretrained(half_dir)  # fp16 on disk, like squeezebert-uncased
    reference.float()
    reference.save_pretrained(bin_dir, safe_serialization=False)
    assert (bin_dir / "pytorch_model.bin").exists() or (bin_dir / "model.safetensors").exists()
    with torch.no_grad():
        expected = reference(**torch_inputs(ids, mask, types)).logits.numpy()
    from_half = from_hf_pretrained(str(half_dir))
    assert next(iter(params(from_half).values())).dtype == np.float32
    # fp16 storage rounds the weights; the outputs agree to fp16 precision.
    assert np.max(np.abs(np.asarray(from_half(ids, mask, types).logits) - expected)) < 2e-2
    from_bin = from_hf_pretrained(str(bin_dir))
    assert np.max(np.abs(np.asarray(from_bin(ids, mask, types).logits) - expected)) <= 1e-4


def test_bin_without_torch_is_a_clear_error(tmp_path):
    model = build_model(get_model_config("squeezebert-test"), "masked_lm")
    save_hf_pretrained(model, str(tmp_path))
    state = {
        k: torch.from_numpy(v)
        for k, v in __import__("safetensors.numpy", fromlist=["x"])
        .load_file(str(tmp_path / "model.safetensors"))
        .items()
    }
    torch.save(state, tmp_path / "pytorch_model.bin")
    os.remove(tmp_path / "model.safetensors")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from squeezemobile_jax.hub import from_hf_pretrained\n"
        f"from_hf_pretrained({str(tmp_path)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0
    assert "pytorch_model.bin" in proc.stderr and "needs torch" in proc.stderr


def test_safetensors_loading_does_not_import_torch(tmp_path):
    model = build_model(get_model_config("mobilebert-test"), "masked_lm")
    save_hf_pretrained(model, str(tmp_path))
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from squeezemobile_jax.hub import from_hf_pretrained\n"
        f"m = from_hf_pretrained({str(tmp_path)!r}); print(type(m).__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "MaskedLMModel"


def test_head_choice_and_fresh_classifier(tmp_path, caplog):
    reference = hf_model(get_model_config("mobilebert-test"), "masked_lm")
    reference.save_pretrained(tmp_path)
    assert type(from_hf_pretrained(str(tmp_path))).__name__ == "MaskedLMModel"
    with caplog.at_level(logging.WARNING):
        clf = from_hf_pretrained(str(tmp_path), head="sequence_classification", num_labels=5)
    assert clf.classifier.kernel.shape == (64, 5)
    assert "not in the file" in caplog.text and "classifier" in caplog.text
    # The trunk came from the file.
    np.testing.assert_array_equal(
        clf.backbone.embeddings.word_embeddings.embedding[...],
        reference.mobilebert.embeddings.word_embeddings.weight.detach().numpy(),
    )


def test_bad_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_hf_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "mobilebert",\n "hidden_size": }')
    with pytest.raises(ValueError, match=r"config.json:2"):
        from_hf_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mobilebert"}))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        from_hf_pretrained(str(tmp_path))
    model = build_model(get_model_config("mobilebert-test"))
    save_hf_pretrained(model, str(tmp_path / "m"))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["intra_bottleneck_size"] = 32
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    mismatch = r"model.safetensors: encoder.layer.0.* has shape .* does not fit parameter"
    with pytest.raises(ValueError, match=mismatch):
        from_hf_pretrained(str(tmp_path / "m"))


def test_stacked_layers_map_to_per_layer_keys():
    model = build_model(get_model_config("squeezebert-test"))
    from squeezemobile_jax.hub import to_hf_state_dict

    state = to_hf_state_dict(model)
    kernel = np.asarray(model.layers.query.kernel[...])  # [L, G, in/G, out/G]
    for i in range(2):
        conv = state[f"encoder.layers.{i}.attention.query.weight"]  # [out, in/G, 1]
        g, cin, cout = kernel.shape[1:]
        for group in range(g):
            block = conv[group * cout : (group + 1) * cout, :, 0]
            np.testing.assert_array_equal(block, kernel[i, group].T)
    assert jax.tree.leaves(state)


def test_head_of_another_size_stays_fresh_but_trunk_mismatch_raises(tmp_path):
    reference = hf_model(
        get_model_config("squeezebert-test", num_labels=3), "sequence_classification"
    )
    reference.save_pretrained(tmp_path)
    binary = from_hf_pretrained(str(tmp_path), num_labels=2)
    assert binary.classifier.kernel.shape == (48, 2)
    np.testing.assert_array_equal(
        binary.backbone.pooler.dense.kernel[...],
        reference.transformer.pooler.dense.weight.detach().numpy().T,
    )
    with pytest.raises(ValueError, match="does not fit"):
        from_hf_pretrained(str(tmp_path), intermediate_size=48)
