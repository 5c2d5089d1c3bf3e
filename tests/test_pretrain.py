"""Pretraining task: losses vs NumPy, a tiny end-to-end run with resume and phases,
device-count invariance, bfloat16 training, and every config in configs/ building."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from squeezemobile_jax.models import build_model
from squeezemobile_jax.tasks import pretrain
from squeezemobile_jax.tasks.common import load_pretrained, model_config_from_section

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str | None = None):
    path = os.path.join(REPO, "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg is not None else module.get_config()


def read_metrics(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_losses_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 3, 7)).astype(np.float32)
    ids = rng.integers(0, 7, (2, 3)).astype(np.int32)
    weights = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    nsp_logits = rng.standard_normal((2, 2)).astype(np.float32)
    nsp_labels = np.array([0, 1], np.int32)
    sums = {
        **pretrain.masked_lm_terms(logits, {"masked_lm_ids": ids, "masked_lm_weights": weights}),
        **pretrain.next_sentence_terms(nsp_logits, nsp_labels),
    }
    got = pretrain.pretraining_metrics(sums)

    def log_softmax(x):
        x = x.astype(np.float64)
        return (
            x
            - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))
            - x.max(-1, keepdims=True)
        )

    lp = log_softmax(logits)
    nll = -np.take_along_axis(lp, ids[..., None], -1)[..., 0]
    expected_mlm = (nll * weights).sum() / weights.sum()  # only the 3 weighted positions
    acc = ((logits.argmax(-1) == ids) * weights).sum() / 3
    nsp = -np.take_along_axis(log_softmax(nsp_logits), nsp_labels[:, None], -1).mean()
    np.testing.assert_allclose(got["mlm_loss"], expected_mlm, rtol=1e-6)
    np.testing.assert_allclose(got["mlm_accuracy"], acc, rtol=1e-6)
    np.testing.assert_allclose(got["nsp_loss"], nsp, rtol=1e-6)
    np.testing.assert_allclose(got["loss"], expected_mlm + nsp, rtol=1e-6)


def tiny_config(**train):
    c = load_config("pretrain_test")
    for k, v in train.items():
        c.train[k] = v
    return c


def test_end_to_end_resume_and_init(tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny_config()
    result = pretrain.run(config, workdir)
    assert result.step == 6
    for name in ("config.json", "model.json", "tokenizer/vocab.txt", "metrics.jsonl"):
        assert os.path.exists(os.path.join(workdir, name)), name
    rows = read_metrics(workdir)
    assert {r["step"] for r in rows if "eval/mlm_loss" in r} == {3, 6}
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    logged = set(rows[-2]) | set(rows[-1])
    assert {"tokens_per_sec", "lr", "grad_norm", "mfu", "input_wait_fraction"} <= logged
    # Running again with more steps resumes at step 6.
    config.train.num_steps = 8
    again = pretrain.run(config, workdir)
    assert again.restored_step == 6 and again.step == 8
    # The workdir initialises another head with the same trunk.
    clf = load_pretrained(workdir, "sequence_classification", num_labels=3)
    trained = nnx.state(again.model.backbone, nnx.Param)
    for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(nnx.state(clf.backbone, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_phases_change_sequence_length(tmp_path):
    workdir = str(tmp_path / "phases")
    config = tiny_config()
    config.data.num_workers = 2  # each phase's loader runs in its own worker processes
    config.phases = (
        {"num_steps": 3, "max_seq_length": 32},
        {"num_steps": 2, "max_seq_length": 64, "max_predictions_per_seq": 8},
    )
    result = pretrain.run(config, workdir)
    assert result.step == 5
    rows = read_metrics(workdir)
    tokens = {
        r["step"]: r["tokens_per_sec"] / r["examples_per_sec"]
        for r in rows
        if "tokens_per_sec" in r
    }
    assert tokens[2] == 32 and tokens[5] == 64
    with pytest.raises(ValueError, match=r"phases\[0\].*unknown"):
        config.phases = ({"num_steps": 3, "max_len": 32},)
        pretrain.run(config, str(tmp_path / "bad"))


def test_bfloat16_compute_trains(tmp_path):
    config = tiny_config(num_steps=60, log_every=1, eval_every=0)
    config.model.compute_dtype = "bfloat16"
    config.model.hidden_dropout_prob = 0.0
    config.model.attention_probs_dropout_prob = 0.0
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule.warmup_steps = 5
    config.checkpoint.every_steps = 0
    workdir = str(tmp_path / "bf16")
    pretrain.run(config, workdir)
    losses = [r["mlm_loss"] for r in read_metrics(workdir) if "mlm_loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3


def _train_subprocess(workdir, devices: int) -> list[dict]:
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
    )
    cmd = [
        sys.executable,
        "train.py",
        "--config",
        "configs/pretrain_test.py",
        "--workdir",
        str(workdir),
        "--config.train.log_every=1",
        "--config.train.num_steps=4",
        "--config.train.eval_every=0",  # the losses are compared, nothing else
        "--config.train.peak_flops_per_device=1e12",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_metrics(workdir)


def test_four_devices_match_one(tmp_path):
    one = _train_subprocess(tmp_path / "one", 1)
    four = _train_subprocess(tmp_path / "four", 4)
    l1 = {r["step"]: r["loss"] for r in one if "loss" in r}
    l4 = {r["step"]: r["loss"] for r in four if "loss" in r}
    assert sorted(l1) == [1, 2, 3, 4]
    for step in l1:
        assert abs(l1[step] - l4[step]) <= 1e-5 * abs(l1[step])


CONFIG_ARGS = {"glue": "model=mobilebert-uncased,task=mnli", "squad": "model=mobilebert-uncased"}


@pytest.mark.parametrize(
    "name",
    sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py"))),
)
def test_every_config_builds_its_model(name):
    config = load_config(name, CONFIG_ARGS.get(name))
    assert config.task in ("pretrain", "distill", "glue", "squad")
    sections = [config.model] + (
        [config.teacher.model] if "teacher" in config and "model" in config.teacher else []
    )
    for section in sections:
        model_config = model_config_from_section(section, vocab_size=30522)
        model = nnx.eval_shape(lambda mc=model_config: build_model(mc, "pretraining"))
        assert jax.tree.leaves(nnx.state(model, nnx.Param))
    if config.task == "pretrain":
        plan = pretrain.phase_plan(config)
        assert plan[-1]["end"] == config.train.num_steps


def test_relative_workdir(tmp_path, monkeypatch):
    """Checkpoints work from a relative workdir (orbax itself needs absolute paths)."""
    monkeypatch.chdir(tmp_path)
    config = tiny_config(num_steps=3, eval_every=0)
    result = pretrain.run(config, "relative/run")
    assert result.step == 3
    assert (tmp_path / "relative" / "run" / "checkpoints" / "3").is_dir()
