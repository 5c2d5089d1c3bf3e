"""Generic training machinery (knows nothing about BERT).

Modules, one job each:
  loop          `train_and_evaluate(config, workdir, task, model, batches)` and `Task`
  step          the pure jitted train step (grad accumulation, non-finite guard)
  train_state   `TrainState` (step, params, opt_state, nonfinite_steps)
  optimizers    LAMB / AdamW as BERT defines them, masks, per-parameter lr scales
  schedules     warmup + polynomial/linear decay, constant
  paths         parameter path names, weight-decay masks, stacked-layer axes
  mesh          1-D 'data' mesh, replicated / FSDP shardings, global batches, multi-host init
  checkpoint    orbax checkpoints (async, keep-N, corrupt ones skipped), params-only restore
  preemption    SIGTERM flag
  metric_writer metrics.jsonl, tensorboard, tqdm / log lines, throughput and MFU
  evaluation    jitted whole-set metric sums (with `cpu_tuning.inference_jit`, re-exported)
  config        `training_defaults()`: every config field the loop reads

Typical entry point::

    config = get_config()                         # starts from training_defaults()
    maybe_initialize_distributed(config)          # before touching devices
    model = build_model(config)                   # an nnx.Module (or a factory)
    task = Task(loss_fn=..., eval_fn=..., lr_scales=...)
    train_and_evaluate(config, workdir, task, model, loader.iterator)
"""

from squeezemobile_jax.cpu_tuning import inference_jit
from squeezemobile_jax.training.checkpoint import Checkpointer, read_metadata, restore_params
from squeezemobile_jax.training.config import training_defaults
from squeezemobile_jax.training.evaluation import summed_metrics
from squeezemobile_jax.training.loop import NonFiniteError, Task, TrainResult, train_and_evaluate
from squeezemobile_jax.training.mesh import (
    batch_sharding,
    global_batch,
    make_mesh,
    maybe_initialize_distributed,
    replicated,
    to_host,
)
from squeezemobile_jax.training.optimizers import (
    Optimizer,
    adamw,
    build_optimizer,
    lamb,
    per_path_lr_scales,
    scale_by_bert_adam,
)
from squeezemobile_jax.training.paths import path_to_str, stacked_axes, weight_decay_mask
from squeezemobile_jax.training.schedules import schedule_from_config, warmup_poly_decay
from squeezemobile_jax.training.train_state import TrainState

__all__ = [
    "Checkpointer",
    "NonFiniteError",
    "Optimizer",
    "Task",
    "TrainResult",
    "TrainState",
    "adamw",
    "batch_sharding",
    "build_optimizer",
    "global_batch",
    "inference_jit",
    "lamb",
    "make_mesh",
    "maybe_initialize_distributed",
    "path_to_str",
    "per_path_lr_scales",
    "read_metadata",
    "replicated",
    "restore_params",
    "scale_by_bert_adam",
    "schedule_from_config",
    "stacked_axes",
    "summed_metrics",
    "to_host",
    "train_and_evaluate",
    "training_defaults",
    "warmup_poly_decay",
    "weight_decay_mask",
]
