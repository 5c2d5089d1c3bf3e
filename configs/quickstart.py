"""Quickstart: a tiny SqueezeBERT pretrained with MLM + NSP on the built-in corpus (text that
ships with CPython), a few minutes on a laptop CPU.

    python train.py --config configs/quickstart.py --workdir workdirs/quickstart
"""

from squeezemobile_jax.tasks.common import model_section
from squeezemobile_jax.tasks.pretrain import default_config


def get_config():
    c = default_config()
    c.model = model_section(
        "squeezebert-test",
        hidden_size=128,
        embedding_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=64,
        q_groups=4,
        k_groups=4,
        v_groups=4,
        intermediate_groups=4,
        output_groups=4,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    c.tokenizer.vocab_size = 4096
    c.data.max_seq_length = 64
    c.data.max_predictions_per_seq = 10
    c.data.global_batch_size = 64
    c.data.eval_documents = 24
    c.data.eval_batch_size = 64
    c.train.num_steps = 500
    c.train.log_every = 50
    c.train.eval_every = 125
    c.train.eval_at_start = True
    c.checkpoint.every_steps = 125
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 2e-3
    c.optimizer.schedule.warmup_steps = 80
    c.optimizer.stacked_params = (("/layers/", 1),)
    return c
