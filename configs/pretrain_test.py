"""A tiny pretraining run for tests and smoke checks (seconds on a CPU).

python train.py --config configs/pretrain_test.py:mobilebert-test --workdir /tmp/run
"""

from squeezemobile_jax.tasks.common import model_section
from squeezemobile_jax.tasks.pretrain import default_config


def get_config(preset: str = "mobilebert-test"):
    c = default_config()
    c.model = model_section(preset or "mobilebert-test", max_position_embeddings=64)
    c.tokenizer.vocab_size = 512
    c.data.max_seq_length = 32
    c.data.max_predictions_per_seq = 5
    c.data.global_batch_size = 8
    c.data.eval_documents = 8
    c.data.eval_batch_size = 8
    c.train.num_steps = 6
    c.train.log_every = 2
    c.train.eval_every = 3
    c.checkpoint.every_steps = 3
    c.checkpoint.async_save = False
    c.optimizer.learning_rate = 1e-3
    c.optimizer.stacked_params = (("/layers/", 1),)
    return c
