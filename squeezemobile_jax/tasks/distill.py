"""MobileBERT distillation (`config.task = "distill"`): layer-wise knowledge transfer from a
teacher, then pretraining distillation, in one resumable run.

    python distill.py --config configs/mobilebert_distill.py --config.teacher=DIR --workdir W

The teacher (`config.teacher`: a `train.py` workdir or an HF directory) runs in inference
mode (no dropout, no gradients, `distill.teacher_compute_dtype`) on the student's batch.
Stages, phases and learning-rate scales are described in `distill_schedule`, the losses in
`distill_losses`, what the student takes from the teacher in `distill_model`.

  stage 1  sum of the layer-wise transfer losses (no MLM/NSP), student dropout off;
           LAMB at `distill.stage1.learning_rate`, constant, times each layer's scale;
           embeddings and heads (copied from the teacher) fixed.
  stage 2  alpha * MLM + (1 - alpha) * KD on the masked positions (one cross-entropy with
           the mixed target) + NSP on the student; everything trainable; `config.optimizer`
           (LAMB, warmup + linear decay over stage 2). The auxiliary strategy adds the
           transfer losses of every layer here. The temperature divides the teacher's
           logits (the original multiplies the teacher's last hidden states before its MLM
           head instead; both are the identity at its value of 1).

One loop call per stage, over one global step counter; `train.num_steps` is derived (leave
it unset). At the stage boundary the optimizer is rebuilt: its moments restart from zero
and the stage-2 schedule counts from the first stage-2 step (`distill_schedule.restart_at`),
a pure function of the step, so the run resumes exactly anywhere. Every checkpoint's
metadata holds the stage and phase of its last step and the plan; a restart on the same
workdir checks the plan and goes on at the same stage, phase (layer) and step.

The workdir reads like a `train.py` workdir of the student (`model.json`, `tokenizer/`,
checkpoints of the student's parameters only): fine-tune from it with `--config.init=W`.

Config fields beyond `pretrain.default_config()` (whose `init` and `phases` are dropped and
whose `tokenizer` is just `path`, default: the teacher's tokenizer):
  teacher                         train.py workdir or HF directory of the teacher (required)
  distill.strategy                'progressive' | 'joint' | 'auxiliary'
  distill.teacher_compute_dtype   None (as saved) | 'float32' | 'bfloat16'
  distill.copy_mismatched_embedding_norm   copy a LayerNorm embedding norm into a NoNorm
  distill.factors                 {fmt: 100, at: 1, mean: 5000, var: 5}
  distill.stage1                  steps_per_layer, joint_steps, learning_rate,
                                  layer_lr_multiplier (3), earlier_layer_ratio (0.1),
                                  freeze_earlier_layers (False)
  distill.stage2                  num_steps, alpha (0.5), temperature (1), student_dropout
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from ml_collections import config_dict

from squeezemobile_jax import fileio
from squeezemobile_jax.data import PretrainingLoader, WordPieceTokenizer, load_tokenizer
from squeezemobile_jax.models import EncoderConfig, build_model, with_layer_list
from squeezemobile_jax.models.flops import (
    forward_flops_per_example,
    training_flops_per_example,
)
from squeezemobile_jax.tasks import distill_losses as losses
from squeezemobile_jax.tasks.common import (
    CHECKPOINT_DIR,
    is_workdir,
    load_pretrained,
    model_config_from_section,
    model_section,
    write_model_spec,
)
from squeezemobile_jax.tasks.distill_model import (
    TRAINABLE,
    StudentWithTeacher,
    check_compatible,
    init_student_from_teacher,
)
from squeezemobile_jax.tasks.distill_schedule import (
    DistillPlan,
    layer_gates,
    layer_lr_scales,
    restart_at,
    stage1_scale_fn,
)
from squeezemobile_jax.tasks.pretrain import (
    HEAD,
    TOKENIZER_DIR,
    build_tokenizer,
    masked_lm_terms,
    next_sentence_terms,
    pretraining_metrics,
    use_mobilebert_recipe,
)
from squeezemobile_jax.tasks.pretrain import default_config as pretrain_defaults
from squeezemobile_jax.training import (
    Optimizer,
    Task,
    TrainResult,
    build_optimizer,
    maybe_initialize_distributed,
    per_path_lr_scales,
    read_metadata,
    stacked_axes,
    summed_metrics,
    train_and_evaluate,
)

log = logging.getLogger(__name__)
Batch = Mapping[str, jax.Array]


# ------------------------------------------------------------------------------- config
def default_config() -> ml_collections.ConfigDict:
    """Every field a distillation config has (the paper's values); configs/ change some."""
    c = pretrain_defaults()
    c.task = "distill"
    del c.init, c.phases
    c.teacher = ""
    c.model = model_section("mobilebert-uncased")
    c.tokenizer = ml_collections.ConfigDict({"path": ""})
    c.train.num_steps = config_dict.placeholder(int)  # derived from the stages
    c.distill = ml_collections.ConfigDict(
        {
            "strategy": "progressive",
            "teacher_compute_dtype": config_dict.placeholder(str),
            "copy_mismatched_embedding_norm": False,
            "factors": {"fmt": 100.0, "at": 1.0, "mean": 5000.0, "var": 5.0},
            "stage1": {
                "steps_per_layer": 10_000,
                "joint_steps": 240_000,
                "learning_rate": 1.5e-3,
                "layer_lr_multiplier": 3.0,
                "earlier_layer_ratio": 0.1,
                "freeze_earlier_layers": False,
            },
            "stage2": {
                "num_steps": 500_000,
                "alpha": 0.5,
                "temperature": 1.0,
                "student_dropout": True,
            },
        }
    )
    c.optimizer.name = "lamb"
    c.optimizer.learning_rate = 1.5e-3
    c.optimizer.schedule.warmup_steps = 10_000
    c.optimizer.schedule.end_ratio = 1e-4
    c.optimizer.stacked_params = (("/layers/", 1),)
    return c


def mobilebert_recipe(student_preset: str) -> ml_collections.ConfigDict:
    """The paper's distillation of `student_preset` from IB-BERT_LARGE: progressive transfer
    in phases of 10k steps per layer (240k for joint), 500k steps of pretraining distillation
    (alpha 0.5, temperature 1), MobileBERT's data and LAMB settings at global batch 2048, the
    teacher in bfloat16."""
    c = default_config()
    c.model = model_section(student_preset, compute_dtype="bfloat16", scan_layers=True)
    c.distill.teacher_compute_dtype = "bfloat16"
    c.distill.strategy = "progressive"
    c.distill.stage1.steps_per_layer = 10_000
    c.distill.stage1.joint_steps = 240_000
    c.distill.stage1.learning_rate = 1.5e-3
    c.distill.stage2.num_steps = 500_000
    c.distill.stage2.alpha = 0.5
    c.distill.stage2.temperature = 1.0
    use_mobilebert_recipe(c, global_batch_size=2048)  # optimizer = stage 2's
    return c


def _check_config(config: ml_collections.ConfigDict, plan: DistillPlan) -> None:
    steps = config.train.get("num_steps")
    if steps is not None and steps != plan.total_steps:
        raise ValueError(
            f"config.train.num_steps={steps}, but the stages add up to {plan.total_steps} "
            "steps; leave train.num_steps unset (the distill.stage1/stage2 fields set it)"
        )
    rules = tuple((str(r), int(n)) for r, n in config.optimizer.get("stacked_params", ()) or ())
    probe = {"backbone": {"layers": {"query": {"kernel": jnp.zeros((2, 1, 1))}}}}
    if jax.tree.leaves(stacked_axes(probe, rules)) != [1]:
        raise ValueError(
            "config.optimizer.stacked_params must mark the stacked layers, e.g. "
            "(('/layers/', 1),): per-layer learning-rate scales and LAMB trust ratios need it"
        )
    s2 = config.distill.stage2
    if not 0.0 <= s2.alpha <= 1.0 or s2.temperature <= 0:
        raise ValueError("distill.stage2: alpha must be in [0, 1] and temperature positive")


# ------------------------------------------------------------------------------- set-up
def teacher_tokenizer_path(config: ml_collections.ConfigDict) -> str:
    """config.tokenizer.path, else the teacher workdir's tokenizer/, else the HF directory."""
    if config.tokenizer.get("path"):
        return config.tokenizer.path
    if is_workdir(config.teacher):
        return fileio.local_dir(fileio.join(config.teacher, TOKENIZER_DIR))
    return config.teacher


def build_distill_tokenizer(config: ml_collections.ConfigDict, workdir: str) -> WordPieceTokenizer:
    """The run's tokenizer: the one saved in `workdir`, else the teacher's (saved there)."""
    if fileio.exists(fileio.join(workdir, TOKENIZER_DIR)):
        return build_tokenizer(config, workdir)
    try:
        path = teacher_tokenizer_path(config)
        load_tokenizer(path)
    except Exception as e:
        raise ValueError(
            f"cannot load the teacher's tokenizer ({e}); the student must use the teacher's "
            "vocabulary: set config.tokenizer.path to its vocab.txt or tokenizer.json"
        ) from e
    pinned = ml_collections.ConfigDict({"tokenizer": {"path": path}, "data": config.data})
    return build_tokenizer(pinned, workdir)


def load_teacher(config: ml_collections.ConfigDict) -> nnx.Module:
    """The teacher's pretraining model from `config.teacher` (workdir or HF directory)."""
    if not config.get("teacher"):
        raise ValueError(
            "config.teacher is not set: give the teacher's train.py workdir or HF directory, "
            "e.g. --config.teacher=workdirs/ib_bert"
        )
    overrides = {}
    if config.distill.get("teacher_compute_dtype"):
        overrides["compute_dtype"] = config.distill.teacher_compute_dtype
    return load_pretrained(config.teacher, HEAD, seed=int(config.seed), **overrides)


def build_student_with_teacher(
    config: ml_collections.ConfigDict, teacher: nnx.Module, vocab_size: int
) -> StudentWithTeacher:
    """A fresh student from `config.model`, initialised from the teacher, holding it."""
    student_config = model_config_from_section(config.model, vocab_size=vocab_size)
    check_compatible(teacher.config, student_config)
    student = build_model(student_config, HEAD, seed=int(config.seed))
    init_student_from_teacher(
        student,
        teacher,
        copy_mismatched_embedding_norm=bool(config.distill.copy_mismatched_embedding_norm),
    )
    return StudentWithTeacher(student, teacher)


# ------------------------------------------------------------------------------- losses
def _encode_both(model: StudentWithTeacher, batch: Batch) -> tuple[Any, Any]:
    """Trunks of student and teacher, deterministic, with hidden states and scores."""
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    kw = dict(deterministic=True, output_hidden_states=True, output_attention_scores=True)
    return model.backbone(*args, **kw), model.teacher.backbone(*args, **kw)


def _layer_terms(student_enc: Any, teacher_enc: Any, mask: jax.Array) -> dict[str, jax.Array]:
    return losses.layer_transfer_terms(
        teacher_enc.hidden_states[1:],
        student_enc.hidden_states[1:],
        teacher_enc.attention_scores,
        student_enc.attention_scores,
        mask,
    )


def per_layer_metrics(terms: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """{"fmt/layer_01": ..., "at/layer_01": ...}: every term of every layer (1-based)."""
    return {
        f"{name}/layer_{i + 1:02d}": values[i]
        for name, values in terms.items()
        for i in range(values.shape[0])
    }


def make_stage1_loss(plan: DistillPlan, factors: Mapping[str, float]) -> Callable:
    """loss_fn(model, batch, rng, step) of layer-wise knowledge transfer."""

    def loss_fn(model: StudentWithTeacher, batch: Batch, rng: jax.Array, *, step: jax.Array):
        del rng  # the student has no dropout here, the teacher never
        student, teacher = _encode_both(model, batch)
        terms = _layer_terms(student, teacher, batch["attention_mask"])
        gates = layer_gates(step, plan)
        loss = losses.layer_transfer_loss(terms, gates, factors)
        active = {k: jnp.sum(gates * v) / jnp.sum(gates) for k, v in terms.items()}
        phase = jnp.asarray(0.0)
        if plan.strategy == "progressive":
            phase = (jnp.minimum(step // plan.steps_per_layer, plan.num_layers - 1) + 1) * 1.0
        metrics = {
            "loss": loss,
            "stage": jnp.asarray(1.0),
            "phase": phase,
            "layer_lr_scale": jnp.max(layer_lr_scales(step, plan)),
            **active,
            **per_layer_metrics(terms),
        }
        return loss, metrics

    return loss_fn


def make_stage2_loss(
    plan: DistillPlan, factors: Mapping[str, float], stage2: Mapping[str, Any]
) -> Callable:
    """loss_fn(model, batch, rng, step) of pretraining distillation (+ transfer if AKT)."""
    auxiliary = plan.strategy == "auxiliary"
    dropout = bool(stage2["student_dropout"])

    def loss_fn(model: StudentWithTeacher, batch: Batch, rng: jax.Array, *, step: jax.Array):
        args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        kw = dict(
            masked_lm_positions=batch["masked_lm_positions"],
            output_hidden_states=auxiliary,
            output_attention_scores=auxiliary,
        )
        student = model(*args, deterministic=not dropout, dropout_rng=rng, **kw)
        teacher = model.teacher(*args, deterministic=True, **kw)
        sums = {
            **masked_lm_terms(student.prediction_logits, batch),
            **next_sentence_terms(student.seq_relationship_logits, batch["next_sentence_labels"]),
            **losses.distillation_mlm_terms(
                student.prediction_logits,
                teacher.prediction_logits,
                batch,
                alpha=float(stage2["alpha"]),
                temperature=float(stage2["temperature"]),
            ),
        }
        metrics = {**pretraining_metrics(sums), **_distillation_metrics(sums)}
        loss = metrics["pd_mlm_loss"] + metrics["nsp_loss"]
        if auxiliary:
            terms = _layer_terms(student.encoder, teacher.encoder, batch["attention_mask"])
            kt = losses.layer_transfer_loss(terms, layer_gates(step, plan), factors)
            loss = loss + kt
            metrics.update(kt_loss=kt, **per_layer_metrics(terms))
        metrics.update(loss=loss, stage=jnp.asarray(2.0), phase=jnp.asarray(0.0))
        return loss, metrics

    return loss_fn


def _distillation_metrics(sums: Mapping[str, Any]) -> dict[str, Any]:
    n = jnp.maximum(sums["mlm_count"], 1.0)
    return {
        "pd_mlm_loss": sums["pd_nll"] / n,
        "kd_loss": sums["kd_nll"] / n,
        "teacher_mlm_accuracy": sums["teacher_correct"] / n,
    }


def make_eval_fn(loader: PretrainingLoader, stage2: Mapping[str, Any]) -> Callable:
    """eval_fn(model, mesh, step): the student's MLM/NSP metrics on the held-out split, the
    teacher's MLM accuracy, and every layer's transfer terms (token-weighted means)."""

    def sums_fn(model: StudentWithTeacher, batch: Batch) -> dict[str, jax.Array]:
        args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        kw = dict(
            masked_lm_positions=batch["masked_lm_positions"],
            deterministic=True,
            output_hidden_states=True,
            output_attention_scores=True,
        )
        student, teacher = model(*args, **kw), model.teacher(*args, **kw)
        tokens = jnp.sum(losses.token_weights(batch["attention_mask"]))
        terms = _layer_terms(student.encoder, teacher.encoder, batch["attention_mask"])
        return {
            **masked_lm_terms(student.prediction_logits, batch),
            **next_sentence_terms(student.seq_relationship_logits, batch["next_sentence_labels"]),
            **losses.distillation_mlm_terms(
                student.prediction_logits,
                teacher.prediction_logits,
                batch,
                alpha=float(stage2["alpha"]),
                temperature=float(stage2["temperature"]),
            ),
            **{k: v * tokens for k, v in per_layer_metrics(terms).items()},
            "tokens": tokens,
        }

    evaluate = summed_metrics(sums_fn)

    def eval_fn(model: nnx.Module, mesh: jax.sharding.Mesh, step: int) -> dict[str, float]:
        sums = evaluate(with_layer_list(model), loader.eval_batches(), mesh)
        if not sums:
            return {}
        out = {**pretraining_metrics(sums), **_distillation_metrics(sums)}
        tokens = max(sums["tokens"], 1.0)
        out.update({k: v / tokens for k, v in sums.items() if "/layer_" in k})
        return {k: float(v) for k, v in out.items()}

    return eval_fn


# ------------------------------------------------------------------------------- stages
def stage_bounds(plan: DistillPlan) -> list[tuple[int, int, int]]:
    """[(stage, first step, end step)] of the stages that have steps."""
    out = []
    if plan.stage1_steps:
        out.append((1, 0, plan.stage1_steps))
    if plan.stage2_steps:
        out.append((2, plan.stage1_steps, plan.total_steps))
    return out


def stage_optimizer(config: ml_collections.ConfigDict, plan: DistillPlan, stage: int) -> Optimizer:
    """Stage 1: constant lr with per-layer scales. Stage 2: `config.optimizer` restarted at
    the first stage-2 step (fresh moments, schedule counted from there)."""
    if stage == 1:
        cfg = copy.deepcopy(config.optimizer)
        with cfg.unlocked():
            cfg.learning_rate = float(config.distill.stage1.learning_rate)
            cfg.schedule = ml_collections.ConfigDict({"name": "constant"})
        scales = per_path_lr_scales(stage1_scale_fn(plan))
        return build_optimizer(cfg, plan.stage1_steps, scales)
    inner = build_optimizer(config.optimizer, plan.stage2_steps)
    start = plan.stage1_steps
    return Optimizer(
        tx=restart_at(inner.tx, start), schedule=lambda step: inner.schedule(step - start)
    )


def stage_task(
    config: ml_collections.ConfigDict,
    plan: DistillPlan,
    stage: int,
    loader: PretrainingLoader,
    student_config: EncoderConfig,
    teacher_config: EncoderConfig,
) -> Task:
    factors = dict(config.distill.factors)
    stage2 = dict(config.distill.stage2)
    loss_fn = (
        make_stage1_loss(plan, factors) if stage == 1 else make_stage2_loss(plan, factors, stage2)
    )
    seq, preds = loader.options.max_seq_length, loader.options.max_predictions_per_seq
    flops = training_flops_per_example(student_config, seq, preds)
    flops += forward_flops_per_example(teacher_config, seq, preds)
    teacher = config.teacher
    return Task(
        loss_fn=loss_fn,
        eval_fn=make_eval_fn(loader, stage2) if loader.num_eval_batches else None,
        trainable=TRAINABLE,
        loss_takes_step=True,
        count_fn=lambda b: {
            "examples": float(len(b["input_ids"])),
            "tokens": float(b["input_ids"].size),
        },
        flops_per_example=flops,
        checkpoint_metadata=lambda done: {**plan.describe(done), "teacher": teacher},
    )


def _restored_position(workdir: str, plan: DistillPlan) -> int:
    """Steps done in `workdir` (0 for a new run); checks the plan it was started with."""
    ckpt_dir = fileio.join(workdir, CHECKPOINT_DIR)
    if not fileio.exists(ckpt_dir):
        return 0
    try:
        meta = read_metadata(ckpt_dir)
    except FileNotFoundError:
        return 0
    saved = meta.get("task", {}).get("plan")
    if saved is None:
        raise ValueError(
            f"{workdir} holds checkpoints that are not a distillation run's (no plan in their "
            "metadata); distill into a new workdir"
        )
    if saved != plan.to_dict():
        raise ValueError(
            f"{workdir} holds a distillation run with plan {saved}, but this config gives "
            f"{plan.to_dict()}; resume with the same distill settings or use a new workdir"
        )
    step = int(meta["step"])
    log.info(
        "Resuming distillation after step %d (stage %s, phase %s)",
        step,
        meta.get("task", {}).get("stage"),
        meta.get("task", {}).get("phase"),
    )
    return step


def run(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
    """Distills `config.teacher` into `config.model` in `workdir`, stage after stage;
    resumes from the newest checkpoint."""
    maybe_initialize_distributed(config)
    teacher = load_teacher(config)
    tokenizer = build_distill_tokenizer(config, workdir)
    model = build_student_with_teacher(config, teacher, tokenizer.vocab_size)
    plan = DistillPlan.from_config(config.distill, model.config.num_hidden_layers)
    _check_config(config, plan)
    done = _restored_position(workdir, plan)
    loader = PretrainingLoader.from_config(
        config.data,
        tokenizer=tokenizer,
        seed=int(config.seed),
        show_progress=jax.process_index() == 0,
    )
    write_model_spec(workdir, model.config, HEAD)
    stages = stage_bounds(plan)
    result = None
    for i, (stage, start, end) in enumerate(stages):
        if done >= end and i < len(stages) - 1:
            continue
        stage_config = copy.deepcopy(config)
        with stage_config.unlocked():
            stage_config.train.num_steps = end
        log.info(
            "Stage %d (%s): steps %d-%d%s",
            stage,
            "layer-wise transfer" if stage == 1 else "pretraining distillation",
            start,
            end,
            f", {plan.steps_per_layer} steps per layer" if plan.phase(start) else "",
        )
        result = train_and_evaluate(
            stage_config,
            workdir,
            stage_task(config, plan, stage, loader, model.config, teacher.config),
            model,
            loader.iterator,
            optimizer=stage_optimizer(config, plan, stage),
        )
        if result.preempted:
            break
    return result
