"""The IB-BERT_LARGE teacher of MobileBERT: MLM + NSP with LAMB, global batch 4096, 500k steps
(the paper's teacher recipe; it states no learning rate, so this uses MobileBERT's 1.5e-3
with 10k warmup steps and linear decay, as its distillation does).

    python train.py --config configs/mobilebert_teacher.py --workdir gs://BUCKET/ib-bert \
        --config.tokenizer.path=/path/to/bert-base-uncased/vocab.txt

Sequences of 512 with 20 masked positions, as MobileBERT's distillation data. The model is
sharded FSDP-style (294M parameters plus LAMB moments).
"""

from squeezemobile_jax.tasks.common import model_section
from squeezemobile_jax.tasks.pretrain import default_config, use_mobilebert_recipe


def get_config():
    c = default_config()
    c.model = model_section("ib-bert-large", compute_dtype="bfloat16", scan_layers=True)
    use_mobilebert_recipe(c, global_batch_size=4096)
    c.train.num_steps = 500_000
    return c
