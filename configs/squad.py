"""SQuAD v1.1 / v2.0 fine-tuning (MobileBERT's recipe: AdamW, lr 4e-5, batch 32, 5 epochs,
10% warmup, seq 384, doc stride 128, query 64, n-best 20, max answer 30).

    python train.py --config configs/squad.py:model=mobilebert-uncased,version=2.0 \
        --config.init=PRETRAINED_DIR --workdir DIR

`model` is a preset name (see `squeezemobile_jax.models.PRESETS`); it decides the model only
when `init` is empty (training from scratch). With `init` (a train.py / distill.py workdir or
an HF directory) the model comes from there, and any `config.model.FIELD` set here overrides
that field (e.g. hidden_dropout_prob, compute_dtype). The tokenizer comes from
`config.tokenizer` or the init directory.

Without `data.train_file` / `data.eval_file`, the hub datasets rajpurkar/squad (1.1) or
rajpurkar/squad_v2 (2.0) are read; offline, pass the official JSON files instead.
"""

from __future__ import annotations

import ml_collections

from squeezemobile_jax.tasks.common import model_section
from squeezemobile_jax.training import training_defaults


def _parse(arg: str | None) -> dict[str, str]:
    out = {"model": "mobilebert-uncased", "version": "1.1"}
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
    c = training_defaults()
    c.task = "squad"
    c.version = args["version"]
    c.init = ""  # train.py/distill.py workdir or HF directory; "" = from scratch
    c.tokenizer = ""  # vocab.txt / tokenizer.json / directory; "" = from init
    c.model = model_section(args["model"])

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

    c.train.batch_size = 32
    c.train.num_epochs = 5.0
    c.train.num_steps = 0  # 0: num_epochs over the training windows
    c.train.warmup_proportion = 0.1  # of num_steps; 0: use optimizer.schedule.warmup_steps
    c.train.log_every = 50
    c.train.eval_every = 0  # 0: evaluate at the end
    c.checkpoint.every_steps = 1000

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 64

    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 4e-5
    c.optimizer.weight_decay = 0.01
    c.optimizer.eps = 1e-6
    c.optimizer.bias_correction = False  # BERT's AdamWeightDecay
    c.optimizer.clip_norm = 1.0
    c.optimizer.schedule.name = "warmup_poly"
    c.optimizer.schedule.end_ratio = 1e-4
    c.optimizer.schedule.power = 1.0
    return c
