"""The distillation task end to end on tiny models: what stays frozen during a phase, what the
student takes from the teacher, logs and checkpoint metadata, and an exact resume after
SIGKILL during stage 1 (subprocesses, as tests/test_training_distributed.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from flax import nnx

from squeezemobile_jax.data import load_tokenizer, save_tokenizer, trained_tokenizer
from squeezemobile_jax.hub import save_hf_pretrained
from squeezemobile_jax.models import build_model, get_model_config
from squeezemobile_jax.tasks import distill
from squeezemobile_jax.tasks.common import (
    CHECKPOINT_DIR,
    load_pretrained,
    load_workdir_model,
    model_config_from_section,
    model_section,
    write_model_spec,
)
from squeezemobile_jax.tasks.pretrain import corpus_section
from squeezemobile_jax.training import read_metadata, restore_params
from squeezemobile_jax.training.checkpoint import save_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = 3


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> str:
    """A random IB-BERT-shaped teacher saved as a train.py workdir (model.json, tokenizer,
    params-only checkpoint)."""
    root = tmp_path_factory.mktemp("distill")
    tokenizer = trained_tokenizer(corpus_section(), 512)
    config = get_model_config(
        "ib-bert-test", num_hidden_layers=LAYERS, vocab_size=tokenizer.vocab_size
    )
    teacher = build_model(config, "pretraining", seed=7)
    norm = teacher.backbone.embeddings.norm  # as a trained teacher's: not the identity
    rng = np.random.default_rng(0)
    norm.scale[...] = rng.uniform(0.5, 1.5, norm.scale.shape).astype(np.float32)
    norm.bias[...] = rng.uniform(-0.5, 0.5, norm.bias.shape).astype(np.float32)
    path = str(root / "teacher")
    write_model_spec(path, config, "pretraining")
    save_params(os.path.join(path, CHECKPOINT_DIR), nnx.state(teacher, nnx.Param))
    save_tokenizer(tokenizer, path)
    return path


def tiny_config(teacher: str, **distill_stage1):
    c = distill.default_config()
    c.teacher = teacher
    c.model = model_section("mobilebert-test", num_hidden_layers=LAYERS)
    c.data.max_seq_length = 32
    c.data.max_predictions_per_seq = 5
    c.data.global_batch_size = 8
    c.data.eval_documents = 8
    c.data.eval_batch_size = 8
    c.distill.stage1.steps_per_layer = 3
    c.distill.stage1.update(distill_stage1)
    c.distill.stage2.num_steps = 0
    c.train.log_every = 1
    c.train.peak_flops_per_device = 1e12
    c.checkpoint.every_steps = 1
    c.checkpoint.max_to_keep = None
    c.checkpoint.async_save = False
    return c


def flat(tree) -> dict[str, np.ndarray]:
    return {
        "/".join(map(str, k)): np.asarray(v[...])
        for k, v in nnx.to_flat_state(tree if isinstance(tree, nnx.State) else nnx.state(tree))
    }


def read_metrics(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_stage_one_freezes_what_the_schedule_freezes(teacher_dir, tmp_path):
    config = tiny_config(teacher_dir, freeze_earlier_layers=True)
    workdir = str(tmp_path / "run")
    result = distill.run(config, workdir)
    assert result.step == 3 * LAYERS

    teacher = load_pretrained(teacher_dir, "pretraining")
    teacher_on_disk = flat(nnx.state(teacher, nnx.Param))
    student_init = distill.build_student_with_teacher(config, teacher, teacher.config.vocab_size)
    init = flat(nnx.state(student_init, distill.TRAINABLE))
    # The teacher inside the trained model is bitwise the teacher on disk.
    after_teacher = flat(nnx.state(result.model.teacher, nnx.Param))
    assert after_teacher.keys() == teacher_on_disk.keys()
    for k, v in teacher_on_disk.items():
        np.testing.assert_array_equal(after_teacher[k], v, err_msg=k)

    # Embeddings, pooler and heads were copied from the teacher (not the embedding norm:
    # LayerNorm in the teacher, NoNorm in the student) and never move in stage 1.
    copied = [k for k in init if not k.startswith("backbone/layers/")]
    assert "backbone/embeddings/word_embeddings/embedding" in copied
    assert "mlm/extra_output_weights" in copied and "seq_relationship/kernel" in copied
    for k in copied:
        if k.startswith("backbone/embeddings/norm/"):
            assert not np.array_equal(init[k], teacher_on_disk[k]), k
            np.testing.assert_array_equal(init[k], 1.0 if k.endswith("scale") else 0.0)
        else:
            np.testing.assert_array_equal(init[k], teacher_on_disk[k], err_msg=k)

    ckpt_dir = os.path.join(workdir, CHECKPOINT_DIR)
    target = nnx.state(student_init, distill.TRAINABLE)
    params = {s: flat(restore_params(ckpt_dir, target, step=s)) for s in range(1, 3 * LAYERS + 1)}
    params[0] = init
    layer_keys = [k for k in init if k.startswith("backbone/layers/")]
    for step in range(1, 3 * LAYERS + 1):
        phase = (step - 1) // 3  # 0-based layer trained by the step that led here
        for k in copied:
            np.testing.assert_array_equal(params[step][k], init[k], err_msg=f"{k} step {step}")
        for k in layer_keys:
            for layer in range(LAYERS):
                same = np.array_equal(params[step][k][layer], params[step - 1][k][layer])
                first_of_phase = (step - 1) % 3 == 0  # background warmup: lr 0 at t = 0
                if layer != phase or first_of_phase:
                    assert same, f"{k} layer {layer} moved at step {step}"
        # The layer in phase moves (checked on a kernel that gets gradient from every term).
        moved = params[step]["backbone/layers/output_bottleneck/kernel"][phase]
        before = params[step - 1]["backbone/layers/output_bottleneck/kernel"][phase]
        assert ((step - 1) % 3 == 0) == np.array_equal(moved, before), step

    # Logs: stage, phase and every layer's terms; checkpoint metadata: stage and phase.
    rows = {r["step"]: r for r in read_metrics(workdir) if "loss" in r}
    assert [rows[s]["phase"] for s in range(1, 10)] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert all(rows[s]["stage"] == 1 for s in rows)
    for name in ("fmt", "at", "mean", "var"):
        assert f"{name}/layer_{LAYERS:02d}" in rows[1]
        assert rows[5][name] == rows[5][f"{name}/layer_02"]
    eval_row = [r for r in read_metrics(workdir) if "eval/mlm_accuracy" in r][-1]
    assert "eval/fmt/layer_03" in eval_row and "eval/teacher_mlm_accuracy" in eval_row
    meta = read_metadata(ckpt_dir, step=5)["task"]
    assert (meta["stage"], meta["phase"]) == (1, 2)

    # The workdir reads like a train.py workdir of the student.
    student = load_workdir_model(workdir)
    got = flat(nnx.state(student, nnx.Param))
    for k, v in params[3 * LAYERS].items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)

    # Changing the plan under an existing workdir is refused.
    config.distill.stage1.steps_per_layer = 4
    with pytest.raises(ValueError, match="plan"):
        distill.run(config, workdir)


def test_teacher_from_an_hf_directory_in_bfloat16(teacher_dir, tmp_path):
    """An HF-format teacher (config.json + safetensors + vocabulary) loads with the dtype
    override, gives the student its vocabulary, and a stage-1 loss on it is finite."""
    source = load_pretrained(teacher_dir, "pretraining")
    hf_dir = str(tmp_path / "hf_teacher")
    save_hf_pretrained(source, hf_dir)
    save_tokenizer(load_tokenizer(os.path.join(teacher_dir, "tokenizer")), tmp_path, "hf_teacher")
    config = tiny_config(hf_dir)
    config.distill.teacher_compute_dtype = "bfloat16"
    teacher = distill.load_teacher(config)
    assert teacher.config.compute_dtype == "bfloat16"
    want = flat(nnx.state(source, nnx.Param))
    for k, v in flat(nnx.state(teacher, nnx.Param)).items():
        np.testing.assert_array_equal(v, want[k], err_msg=k)
    workdir = str(tmp_path / "run")
    tokenizer = distill.build_distill_tokenizer(config, workdir)
    assert tokenizer.vocab_size == source.config.vocab_size
    assert os.path.isfile(os.path.join(workdir, "tokenizer", "vocab.txt"))

    model = distill.build_student_with_teacher(config, teacher, tokenizer.vocab_size)
    plan = distill.DistillPlan.from_config(config.distill, LAYERS)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, tokenizer.vocab_size, (2, 16)).astype(np.int32)
    mask = np.ones((2, 16), np.int32)
    mask[0, 10:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    loss, metrics = distill.make_stage1_loss(plan, dict(config.distill.factors))(
        model, batch, None, step=np.int32(4)
    )
    assert np.isfinite(float(loss)) and float(metrics["phase"]) == 2.0
    # Step 0 gates no layer (the original's (spp l, spp (l + 1)] bounds): loss 0, metrics finite.
    loss, metrics = distill.make_stage1_loss(plan, dict(config.distill.factors))(
        model, batch, None, step=np.int32(0)
    )
    assert float(loss) == 0.0 and all(np.all(np.isfinite(v)) for v in metrics.values())
    # Auxiliary KT: stage 2's loss adds every layer's transfer terms to PD + NSP.
    batch.update(
        masked_lm_positions=np.array([[1, 2, 3], [4, 5, 0]], np.int32),
        masked_lm_ids=ids[:, 1:4],
        masked_lm_weights=np.array([[1, 1, 1], [1, 1, 0]], np.float32),
        next_sentence_labels=np.array([0, 1], np.int32),
    )
    aux = distill.DistillPlan("auxiliary", LAYERS, 0, 5)
    stage2 = dict(config.distill.stage2)
    loss, metrics = distill.make_stage2_loss(aux, dict(config.distill.factors), stage2)(
        model, batch, jax.random.key(0), step=np.int32(0)
    )
    parts = sum(float(metrics[k]) for k in ("pd_mlm_loss", "nsp_loss", "kt_loss"))
    np.testing.assert_allclose(float(loss), parts, rtol=1e-6)
    assert float(metrics["kt_loss"]) > 0 and "fmt/layer_03" in metrics

    config.teacher = ""
    with pytest.raises(ValueError, match="config.teacher"):
        distill.load_teacher(config)
    config.teacher = hf_dir
    config.model.num_hidden_layers = 2
    with pytest.raises(ValueError, match="num_hidden_layers"):
        distill.build_student_with_teacher(config, teacher, tokenizer.vocab_size)


# ------------------------------------------------------------------------ exact resume
RESUME_STEPS_PER_LAYER = 12
RESUME_STAGE2 = 4


def _config_file(tmp_path, teacher: str) -> str:
    path = tmp_path / "resume_config.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from squeezemobile_jax.tasks.common import model_section
            from squeezemobile_jax.tasks.distill import default_config


            def get_config():
                c = default_config()
                c.teacher = {teacher!r}
                c.model = model_section("mobilebert-test", num_hidden_layers={LAYERS})
                c.data.max_seq_length = 64
                c.data.max_predictions_per_seq = 8
                c.data.global_batch_size = 16
                c.distill.stage1.steps_per_layer = {RESUME_STEPS_PER_LAYER}
                c.distill.stage2.num_steps = {RESUME_STAGE2}
                c.optimizer.schedule.warmup_steps = 2
                c.train.log_every = 1
                c.train.peak_flops_per_device = 1e12
                c.checkpoint.every_steps = 3
                return c
            """
        )
    )
    return str(path)


def _env() -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return env


def _launch(config_file: str, workdir, log) -> subprocess.Popen:
    cmd = [sys.executable, "distill.py", "--config", config_file, "--workdir", str(workdir)]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=log)


def _logged_steps(workdir) -> list[int]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line)["step"] for line in f if line.strip().endswith("}")]


def test_resume_after_sigkill_in_stage_one_is_bitwise_exact(teacher_dir, tmp_path):
    config_file = _config_file(tmp_path, teacher_dir)
    stage1 = LAYERS * RESUME_STEPS_PER_LAYER
    straight_log = open(tmp_path / "straight.log", "w")  # noqa: SIM115 - closed below
    straight = _launch(config_file, tmp_path / "straight", straight_log)
    killed_dir = tmp_path / "killed"
    kill_after = random.Random().randint(7, 20)  # logged step; checkpoint 3 is written
    proc = _launch(config_file, killed_dir, subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if max(_logged_steps(killed_dir), default=0) >= kill_after:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    done = max(_logged_steps(killed_dir))
    assert done < stage1, f"killed after step {done}, past stage 1"

    resumed = subprocess.run(
        [sys.executable, "distill.py", "--config", config_file, "--workdir", str(killed_dir)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    straight.wait(timeout=300)
    straight_log.close()
    assert straight.returncode == 0, (tmp_path / "straight.log").read_text()[-4000:]

    restored = int(resumed.stderr.split("Resuming distillation after step ")[1].split()[0])
    assert 3 <= restored <= done and restored % 3 == 0, (restored, done)
    phase = (restored - 1) // RESUME_STEPS_PER_LAYER + 1
    assert f"(stage 1, phase {phase})" in resumed.stderr

    want = flat(nnx.state(load_workdir_model(str(tmp_path / "straight")), nnx.Param))
    got = flat(nnx.state(load_workdir_model(str(killed_dir)), nnx.Param))
    assert got.keys() == want.keys()
    for k in want:
        assert np.array_equal(got[k], want[k]), f"{k} differs (killed after step {done})"
    final = read_metadata(os.path.join(killed_dir, CHECKPOINT_DIR))
    assert final["step"] == stage1 + RESUME_STAGE2 and final["task"]["stage"] == 2
    assert jax.tree.leaves(want)  # something was compared


def _load_config(name: str, arg: str | None = None):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def test_quickstart_pair_and_baseline_match():
    """The student sees the teacher's held-out split; the baseline differs only in training."""
    teacher = _load_config("ib_bert_quickstart")
    student = _load_config("distill_quickstart")
    scratch = _load_config("distill_quickstart", "scratch")
    assert student.data.to_dict() == teacher.data.to_dict() == scratch.data.to_dict()
    assert student.seed == teacher.seed == scratch.seed
    assert student.model.to_dict() == scratch.model.to_dict()
    assert student.optimizer.to_dict() == scratch.optimizer.to_dict()
    t_cfg = model_config_from_section(teacher.model, vocab_size=2048)
    s_cfg = model_config_from_section(student.model, vocab_size=2048)
    distill.check_compatible(t_cfg, s_cfg)
    assert t_cfg.embedding_size == s_cfg.embedding_size  # embeddings and heads are copied
    plan = distill.DistillPlan.from_config(student.distill, s_cfg.num_hidden_layers)
    assert scratch.task == "pretrain" and scratch.train.num_steps == plan.total_steps
