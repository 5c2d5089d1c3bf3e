"""scripts/convert_checkpoint.py: workdir -> HF directory -> model directory, exactly."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch
import transformers
from flax import nnx
from hf_reference import padded_batch, torch_inputs

from squeezemobile_jax.models import build_model, get_model_config
from squeezemobile_jax.tasks.common import load_pretrained, write_model_spec
from squeezemobile_jax.training.checkpoint import save_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def convert(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "scripts/convert_checkpoint.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def flat(model) -> dict:
    return {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def model_dir(tmp_path, preset: str, head: str):
    """A params-only model directory, as a trained run leaves one."""
    model = build_model(get_model_config(preset), head, seed=4)
    directory = tmp_path / "src"
    save_params(directory / "checkpoints", nnx.state(model, nnx.Param), step=7)
    write_model_spec(str(directory), model.config, head)
    (directory / "tokenizer").mkdir()
    (directory / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n")
    return model, directory


def test_both_directions_are_exact_and_transformers_agrees(tmp_path):
    model, src = model_dir(tmp_path, "mobilebert-test", "pretraining")
    convert("to-hf", "--workdir", str(src), "--out", str(tmp_path / "hf"))
    assert (tmp_path / "hf" / "vocab.txt").exists()
    hf = transformers.MobileBertForPreTraining.from_pretrained(tmp_path / "hf").eval()
    ids, mask, types = padded_batch(model.config.vocab_size)
    with torch.no_grad():
        ref = hf(**torch_inputs(ids, mask, types)).prediction_logits.numpy()
    assert np.max(np.abs(np.asarray(model(ids, mask, types).prediction_logits) - ref)) <= 1e-4

    convert("from-hf", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back"))
    assert (tmp_path / "back" / "tokenizer" / "vocab.txt").exists()
    back = load_pretrained(str(tmp_path / "back"), "pretraining")
    a, b = flat(model), flat(back)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_teacher_round_trip_and_head_choice(tmp_path):
    """IB-BERT exports (transformers cannot build it) still come back exactly."""
    model, src = model_dir(tmp_path, "ib-bert-test", "pretraining")
    convert("to-hf", "--workdir", str(src), "--out", str(tmp_path / "hf"))
    convert("from-hf", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back"))
    back = load_pretrained(str(tmp_path / "back"), "pretraining")
    a, b = flat(model), flat(back)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    convert("to-hf", "--workdir", str(src), "--out", str(tmp_path / "mlm"), "--head", "masked_lm")
    assert '"MobileBertForMaskedLM"' in (tmp_path / "mlm" / "config.json").read_text()
