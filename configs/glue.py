"""GLUE fine-tuning.

    python train.py --config configs/glue.py:model=squeezebert,task=mrpc \\
        --config.init=PATH/squeezebert-mnli-headless --workdir runs/mrpc
    python eval_glue.py --config configs/glue.py:model=mobilebert --config.init=WORKDIR

`model=` picks the architecture and its default hyperparameters: squeezebert, mobilebert,
mobilebert-tiny, bert-base, or a preset name from `squeezemobile_jax.models.PRESETS` (the tiny
`squeezebert-test` / `mobilebert-test` train from scratch in seconds). With `init` (a
train.py/distill.py workdir or an HF directory) the architecture comes from there and the
preset only sets the hyperparameters. `task=` is a GLUE task (cola, sst2, mrpc, stsb, qqp,
mnli, qnli, rte, wnli); eval_glue.py runs every task in `eval_glue.tasks`.

Data: the HF hub dataset by default; offline, point `data.glue_dir` at the original GLUE
download (or an HF-style parquet copy), or give one file per split in `data.files`.
The number of steps follows from `finetune.epochs` and the training set size; warmup is
`finetune.warmup_proportion` of them; dev sets are scored every epoch and the best epoch is
exported to `<workdir>/best` (HF format) and used for the test predictions.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from squeezemobile_jax.tasks.common import model_section
from squeezemobile_jax.training import training_defaults

# model= name -> (preset, learning rate, batch size, epochs, max sequence length).
# BERT's run_classifier defaults (lr 5e-5, batch 32, 3 epochs, length 128) for the BERT-like
# SqueezeBERT; MobileBERT wants a larger rate and more epochs (its paper searched
# lr 1e-5..1e-4, batch 16/32/48, 2..10 epochs). Test sizes use a large rate and short inputs.
MODELS: dict[str, tuple[str, float, int, int, int]] = {
    "squeezebert": ("squeezebert-uncased", 5e-5, 32, 3, 128),
    "bert-base": ("bert-base-uncased", 5e-5, 32, 3, 128),
    "mobilebert": ("mobilebert-uncased", 1e-4, 32, 5, 128),
    "mobilebert-tiny": ("mobilebert-tiny", 1e-4, 32, 5, 128),
    "squeezebert-test": ("squeezebert-test", 1e-3, 16, 3, 64),
    "mobilebert-test": ("mobilebert-test", 1e-3, 16, 3, 64),
}
ALL_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
# Split keys `data.files` accepts (HF split names; `ax` is the AX diagnostic test set and
# `ax_labeled` its labeled version, diagnostic-full.tsv, scored when given).
SPLIT_KEYS = (
    "train",
    "validation",
    "test",
    "validation_matched",
    "validation_mismatched",
    "test_matched",
    "test_mismatched",
    "ax",
    "ax_labeled",
)


def _parse(arg: str | None) -> dict[str, str]:
    out = {}
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in ("model", "task"):
            raise ValueError(f"configs/glue.py: expected model=NAME,task=TASK, got {arg!r}")
        out[key] = value
    return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = _parse(arg)
    model = args.get("model", "squeezebert")
    if model in MODELS:
        preset, lr, batch, epochs, length = MODELS[model]
    else:  # any preset, with SqueezeBERT's defaults
        preset, (_, lr, batch, epochs, length) = model, MODELS["squeezebert"]

    c = training_defaults()
    c.task = "glue"
    c.model = model_section(preset)
    c.init = ""  # train.py/distill.py workdir or HF directory; "" trains from scratch
    c.tokenizer = ml_collections.ConfigDict()
    c.tokenizer.path = ""  # vocab.txt / tokenizer.json / dir; "" = the one in init

    c.data = ml_collections.ConfigDict()
    c.data.task_name = args.get("task", "mrpc")
    c.data.glue_dir = config_dict.placeholder(str)  # original GLUE download or HF-style copy
    c.data.files = ml_collections.ConfigDict({k: "" for k in SPLIT_KEYS})  # one file per split
    c.data.hub_id = "nyu-mll/glue"
    c.data.cache_dir = config_dict.placeholder(str)  # HF datasets cache
    c.data.bad_rows = "skip"  # 'skip' (count + log) or 'error' for bad train/dev rows
    c.data.max_seq_length = length
    c.data.eval_batch_size = 128

    c.finetune = ml_collections.ConfigDict()
    c.finetune.epochs = epochs
    c.finetune.batch_size = batch
    c.finetune.warmup_proportion = 0.1

    # Knowledge distillation from a fine-tuned teacher (SqueezeBERT's "bells and whistles"):
    # loss = (1 - weight) * hard loss + weight * soft loss, the soft loss being T^2 *
    # cross-entropy to the teacher's softened distribution (MSE to its score for STS-B).
    # `teacher` is a workdir or HF directory; "{task}" in it is replaced by the task name.
    c.distill = ml_collections.ConfigDict()
    c.distill.teacher = ""
    c.distill.weight = 0.5
    c.distill.temperature = 1.0

    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = lr
    c.optimizer.weight_decay = 0.01
    c.optimizer.clip_norm = 1.0
    c.optimizer.schedule.name = "warmup_poly"  # linear warmup, then linear decay to 0
    c.optimizer.schedule.power = 1.0
    c.optimizer.schedule.end_ratio = 0.0
    c.optimizer.schedule.decay_from = "start"  # BERT's schedule

    c.train.num_steps = 0  # set from finetune.epochs
    c.train.log_every = 50
    c.checkpoint.every_steps = 0  # set to one epoch
    c.checkpoint.max_to_keep = 2

    # eval_glue.py: which tasks, the sweep (empty = the single value above), MNLI-first init.
    c.eval_glue = ml_collections.ConfigDict()
    c.eval_glue.tasks = ALL_TASKS
    c.eval_glue.learning_rates = ()
    c.eval_glue.batch_sizes = ()
    c.eval_glue.epochs = ()
    c.eval_glue.start_from_mnli = False  # other tasks start from the MNLI run's best model
    return c
