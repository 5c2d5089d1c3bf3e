"""SQuAD v1.1 / v2.0 fine-tuning.

    python train.py --config configs/squad.py:model=mobilebert,version=2.0 \\
        --config.init=PRETRAINED_DIR --workdir DIR

`model=` picks the architecture and its default hyperparameters: squeezebert, bert-base,
mobilebert, mobilebert-tiny, or any preset name from `squeezemobile_jax.models.PRESETS` (the
tiny `squeezebert-test` / `mobilebert-test` train from scratch in seconds). With `init` (a
train.py / distill.py workdir or an HF directory) the architecture comes from there, the
preset only sets the hyperparameters, and any `config.model.FIELD` set here overrides that
field (e.g. hidden_dropout_prob, compute_dtype). The tokenizer is `tokenizer.path` or the one
in the init directory.

Features and post-processing follow BERT's run_squad.py: sequence 384, doc stride 128, query
64, n-best 20, answers up to 30 tokens, v2.0 null threshold 0.0. The number of steps follows
from `train.num_epochs` and the number of training windows; warmup is
`train.warmup_proportion` of them.

Without `data.train_file` / `data.eval_file`, the hub datasets rajpurkar/squad (1.1) or
rajpurkar/squad_v2 (2.0) are read; offline, pass the official JSON files instead.
"""

from __future__ import annotations

import ml_collections

from squeezemobile_jax.tasks.common import model_section
from squeezemobile_jax.training import training_defaults

# model= name -> (preset, learning rate, batch size, epochs).
# MobileBERT's SQuAD recipe: lr 4e-5, batch 32, 5 epochs. The BERT-like SqueezeBERT and
# BERT-base take BERT's run_squad example (lr 3e-5, 2 epochs) at batch 32. Test sizes use a
# large rate.
MODELS: dict[str, tuple[str, float, int, float]] = {
    "squeezebert": ("squeezebert-uncased", 3e-5, 32, 2.0),
    "bert-base": ("bert-base-uncased", 3e-5, 32, 2.0),
    "mobilebert": ("mobilebert-uncased", 4e-5, 32, 5.0),
    "mobilebert-tiny": ("mobilebert-tiny", 4e-5, 32, 5.0),
    "squeezebert-test": ("squeezebert-test", 3e-3, 32, 5.0),
    "mobilebert-test": ("mobilebert-test", 3e-3, 32, 5.0),
}


def _parse(arg: str | None) -> dict[str, str]:
    out = {"model": "mobilebert", "version": "1.1"}
    for item in (arg or "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or key not in out:
            raise ValueError(f"configs/squad.py:{arg}: expected model=NAME,version=1.1|2.0")
        out[key] = value
    if out["version"] not in ("1.1", "2.0"):
        raise ValueError(f"configs/squad.py: version={out['version']!r}; use 1.1 or 2.0")
    return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = _parse(arg)
    model = args["model"]
    if model in MODELS:
        preset, lr, batch, epochs = MODELS[model]
    else:  # any preset, with MobileBERT's hyperparameters
        preset, (_, lr, batch, epochs) = model, MODELS["mobilebert"]

    c = training_defaults()
    c.task = "squad"
    c.version = args["version"]
    c.init = ""  # train.py/distill.py workdir or HF directory; "" = from scratch
    c.tokenizer = ml_collections.ConfigDict()
    c.tokenizer.path = ""  # vocab.txt / tokenizer.json / directory; "" = the one in init
    c.model = model_section(preset)

    c.data = ml_collections.ConfigDict()
    c.data.train_file = ""  # SQuAD JSON (official or flattened records); "" = hub split
    c.data.eval_file = ""
    c.data.hub_dataset = ""  # "" = rajpurkar/squad or rajpurkar/squad_v2 by version
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.on_error = "raise"  # malformed questions: 'raise' | 'skip' (counted, logged)
    c.data.max_seq_length = 384
    c.data.doc_stride = 128  # tokens between window starts
    c.data.max_query_length = 64

    c.postprocess = ml_collections.ConfigDict()
    c.postprocess.n_best_size = 20
    c.postprocess.max_answer_length = 30
    c.postprocess.null_score_diff_threshold = 0.0  # v2.0: "" when null - best span > this

    c.train.batch_size = batch
    c.train.num_epochs = epochs
    c.train.num_steps = 0  # 0: num_epochs over the training windows
    c.train.warmup_proportion = 0.1  # of num_steps; 0: use optimizer.schedule.warmup_steps
    c.train.log_every = 50
    c.train.eval_every = 0  # 0: evaluate at the end
    c.checkpoint.every_steps = 1000

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 64

    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = lr
    c.optimizer.weight_decay = 0.01
    c.optimizer.eps = 1e-6
    c.optimizer.bias_correction = False  # BERT's AdamWeightDecay
    c.optimizer.clip_norm = 1.0
    c.optimizer.schedule.name = "warmup_poly"
    c.optimizer.schedule.end_ratio = 1e-4
    c.optimizer.schedule.power = 1.0
    return c
