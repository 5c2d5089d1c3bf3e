"""Quickstart distillation: a tiny MobileBERT-shaped student (bottleneck, 2 stacked FFNs,
NoNorm, relu) distilled from the tiny IB-BERT teacher of configs/ib_bert_quickstart.py on
the built-in corpus. Minutes on a laptop CPU.

    python train.py --config configs/ib_bert_quickstart.py --workdir workdirs/ib_bert_quickstart
    python distill.py --config configs/distill_quickstart.py \\
        --config.teacher=workdirs/ib_bert_quickstart --workdir workdirs/distill_quickstart

`configs/distill_quickstart.py:scratch` is the baseline: the same student, data, optimizer
and number of student steps, trained with MLM + NSP from scratch through train.py (pass the
teacher's vocabulary: `--config.tokenizer.path=workdirs/ib_bert_quickstart/tokenizer`).
`scripts/distill_experiment.py` runs all three and prints the comparison.
"""

from squeezemobile_jax.tasks import distill, pretrain
from squeezemobile_jax.tasks.common import model_section

NUM_LAYERS = 4
STEPS_PER_LAYER = 150
STAGE2_STEPS = 600


def student_section():
    return model_section(
        "mobilebert-test",
        embedding_size=32,  # the teacher's: embeddings and heads are copied
        hidden_size=64,
        intra_bottleneck_size=32,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=4,
        intermediate_size=128,
        num_feedforward_networks=2,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def common(c):
    """Data, optimizer and logging shared by the distillation and the scratch baseline. The
    data section equals configs/ib_bert_quickstart.py's, so the held-out documents (and the
    eval examples) are the teacher's."""
    c.model = student_section()
    c.data.max_seq_length = 64
    c.data.max_predictions_per_seq = 10
    c.data.global_batch_size = 32
    c.data.eval_documents = 24
    c.data.eval_batch_size = 64
    c.train.log_every = 50
    c.train.eval_every = 300
    c.checkpoint.every_steps = 300
    c.optimizer.name = "lamb"
    c.optimizer.learning_rate = 5e-3
    c.optimizer.schedule.warmup_steps = 60
    c.optimizer.schedule.end_ratio = 0.0
    c.optimizer.stacked_params = (("/layers/", 1),)
    return c


def get_config(arg: str | None = None):
    if arg == "scratch":
        c = common(pretrain.default_config())
        c.train.num_steps = NUM_LAYERS * STEPS_PER_LAYER + STAGE2_STEPS
        return c
    if arg:
        raise ValueError(f"configs/distill_quickstart.py: unknown argument {arg!r}; use 'scratch'")
    c = common(distill.default_config())
    c.distill.strategy = "progressive"
    c.distill.stage1.steps_per_layer = STEPS_PER_LAYER
    c.distill.stage1.learning_rate = 1.5e-3
    c.distill.stage2.num_steps = STAGE2_STEPS
    c.distill.stage2.student_dropout = False
    return c
