"""The distillation config: every field a `distill.py` run reads, the paper's recipe, and
the checks that need the plan."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from squeezemobile_jax.tasks.common import model_section
from squeezemobile_jax.tasks.distill.schedule import DistillPlan
from squeezemobile_jax.tasks.pretrain import default_config as pretrain_defaults
from squeezemobile_jax.tasks.pretrain import use_mobilebert_recipe
from squeezemobile_jax.training import stacked_axes


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


def check_config(config: ml_collections.ConfigDict, plan: DistillPlan) -> None:
    """Raises ValueError naming the field when the config contradicts `plan`."""
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
