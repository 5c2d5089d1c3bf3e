"""The distillation run: the teacher's tokenizer, one loop call per stage over one global
step counter, and resuming at the stage, phase and step a workdir's checkpoints hold."""

from __future__ import annotations

import copy
import logging

import jax
import ml_collections

from squeezemobile_jax import fileio
from squeezemobile_jax.data import PretrainingLoader, WordPieceTokenizer
from squeezemobile_jax.models import EncoderConfig
from squeezemobile_jax.models.flops import forward_flops_per_example, training_flops_per_example
from squeezemobile_jax.tasks.common import (
    CHECKPOINT_DIR,
    tokenizer_of,
    workdir_tokenizer,
    write_model_spec,
)
from squeezemobile_jax.tasks.distill.config import check_config
from squeezemobile_jax.tasks.distill.model import (
    TRAINABLE,
    build_student_with_teacher,
    load_teacher,
)
from squeezemobile_jax.tasks.distill.objectives import (
    make_eval_fn,
    make_stage1_loss,
    make_stage2_loss,
)
from squeezemobile_jax.tasks.distill.schedule import DistillPlan, restart_at, stage1_scale_fn
from squeezemobile_jax.tasks.pretrain import HEAD
from squeezemobile_jax.training import (
    Optimizer,
    Task,
    TrainResult,
    build_optimizer,
    maybe_initialize_distributed,
    per_path_lr_scales,
    read_metadata,
    train_and_evaluate,
)

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ tokenizer
def build_distill_tokenizer(config: ml_collections.ConfigDict, workdir: str) -> WordPieceTokenizer:
    """The run's tokenizer: the one saved in `workdir`, else `config.tokenizer.path`, else the
    teacher's (saved in the workdir): the student must use the teacher's vocabulary."""

    def make() -> WordPieceTokenizer:
        try:
            return tokenizer_of(config.teacher, config.tokenizer.get("path"))
        except Exception as e:
            raise ValueError(
                f"cannot load the teacher's tokenizer ({e}); the student must use the "
                "teacher's vocabulary: set config.tokenizer.path to its vocab.txt or "
                "tokenizer.json"
            ) from e

    return workdir_tokenizer(workdir, make)


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
    check_config(config, plan)
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
