"""A tiny IB-BERT teacher (inverted bottleneck, LayerNorm, gelu, Q/K/V from the block input)
pretrained with MLM + NSP on the built-in corpus: the teacher of `distill_quickstart.py`.

    python train.py --config configs/ib_bert_quickstart.py --workdir workdirs/ib_bert_quickstart

Its held-out split (`data.eval_documents`) matches the student's, so the student is
evaluated on documents the teacher never saw.
"""

from squeezemobile_jax.tasks.common import model_section
from squeezemobile_jax.tasks.pretrain import default_config


def get_config():
    c = default_config()
    c.model = model_section(
        "ib-bert-test",
        embedding_size=32,
        hidden_size=64,
        intra_bottleneck_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    c.tokenizer.vocab_size = 2048
    c.data.max_seq_length = 64
    c.data.max_predictions_per_seq = 10
    c.data.global_batch_size = 32
    c.data.eval_documents = 24
    c.data.eval_batch_size = 64
    c.train.num_steps = 1500
    c.train.log_every = 100
    c.train.eval_every = 500
    c.checkpoint.every_steps = 500
    c.optimizer.name = "lamb"
    c.optimizer.learning_rate = 5e-3
    c.optimizer.schedule.warmup_steps = 150
    c.optimizer.stacked_params = (("/layers/", 1),)
    return c
