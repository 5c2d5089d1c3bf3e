"""The IB-BERT_LARGE teacher of MobileBERT: MLM + NSP with LAMB, global batch 4096, 500k steps
(the paper's teacher recipe; it states no learning rate, so this uses MobileBERT's 1.5e-3
with 10k warmup steps and linear decay, as its distillation does).

    python train.py --config configs/mobilebert_teacher.py --workdir gs://BUCKET/ib-bert \
        --config.tokenizer.path=/path/to/bert-base-uncased/vocab.txt

Sequences of 512 with 20 masked positions, as MobileBERT's distillation data. The model is
sharded FSDP-style (294M parameters plus LAMB moments).
"""

from squeezemobile_jax.tasks.common import model_section
from squeezemobile_jax.tasks.pretrain import corpus_section, default_config


def get_config():
    c = default_config()
    c.model = model_section("ib-bert-large", compute_dtype="bfloat16", scan_layers=True)
    c.data.corpus = corpus_section(
        kind="hf",
        name="wikimedia/wikipedia",
        config="20231101.en",
        sentence_split="punctuation",
    )
    c.data.task = "nsp"
    c.data.max_seq_length = 512
    c.data.max_predictions_per_seq = 20
    c.data.global_batch_size = 4096
    c.data.eval_documents = 2000
    c.data.eval_batch_size = 512
    c.data.num_proc = 16
    c.train.num_steps = 500_000
    c.train.log_every = 100
    c.train.eval_every = 10_000
    c.checkpoint.every_steps = 2000
    c.mesh.fsdp = True
    c.optimizer.name = "lamb"
    c.optimizer.learning_rate = 1.5e-3
    c.optimizer.schedule.warmup_steps = 10_000
    c.optimizer.schedule.end_ratio = 1e-4
    c.optimizer.stacked_params = (("/layers/", 1),)
    return c
