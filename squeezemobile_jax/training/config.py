"""Default training config: every field the loop and `build_optimizer` read.

Experiment files start from `training_defaults()` and add their own ``model`` / ``data`` /
task fields::

    config = training_defaults()
    config.train.num_steps = 500_000
    config.optimizer.learning_rate = 1.5e-3
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def training_defaults() -> ml_collections.ConfigDict:
    """The ``seed``, ``train``, ``checkpoint``, ``mesh``, ``distributed`` and ``optimizer``
    sections with their defaults (BERT / MobileBERT LAMB, linear warmup + decay)."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # base PRNG key; step rng = fold_in(key(seed), step)

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1000
    c.train.grad_accum_steps = 1  # micro-batches per step (global batch must divide)
    c.train.log_every = 100
    c.train.eval_every = 0  # 0: only at the end
    c.train.eval_at_start = False  # also evaluate the initial model (fresh runs only)
    c.train.eval_at_end = True
    c.train.nonfinite = "stop"  # 'stop' | 'skip' a step with non-finite loss/grads
    c.train.param_dtype = "float32"  # floating trainable params are cast to this
    c.train.peak_flops_per_device = config_dict.placeholder(float)  # for MFU; else a table

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 1000  # 0: only at the end / on preemption
    c.checkpoint.max_to_keep = 3
    c.checkpoint.async_save = True

    c.mesh = ml_collections.ConfigDict()
    c.mesh.fsdp = False  # shard params + optimizer moments over the 'data' axis
    c.mesh.fsdp_min_size_mb = 4.0  # smaller arrays stay replicated

    c.distributed = ml_collections.ConfigDict()
    c.distributed.initialize = False  # also on when JAX_COORDINATOR_ADDRESS is set
    c.distributed.coordinator_address = config_dict.placeholder(str)
    c.distributed.num_processes = config_dict.placeholder(int)
    c.distributed.process_id = config_dict.placeholder(int)

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "lamb"  # 'lamb' | 'adamw'
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 0.01
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-6
    c.optimizer.bias_correction = False  # BERT's optimizers have none
    c.optimizer.clip_norm = 1.0  # global-norm clipping; 0 = off
    c.optimizer.exclude_from_weight_decay = ("bias", "norm")  # regexes on param paths
    c.optimizer.exclude_1d = True
    c.optimizer.exclude_from_trust_ratio = config_dict.placeholder(tuple)  # None: as wd
    c.optimizer.stacked_params = ()  # ((regex, num_leading_layer_axes), ...)
    c.optimizer.schedule = ml_collections.ConfigDict()
    c.optimizer.schedule.name = "warmup_poly"
    c.optimizer.schedule.warmup_steps = 0
    c.optimizer.schedule.decay_steps = 0  # 0: train.num_steps
    c.optimizer.schedule.end_ratio = 0.0
    c.optimizer.schedule.power = 1.0
    c.optimizer.schedule.decay_from = "start"  # 'start' (BERT) | 'warmup_end'
    return c
