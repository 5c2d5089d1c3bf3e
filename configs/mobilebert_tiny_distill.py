"""MobileBERT_TINY (bottleneck attention input, 2 stacked FFNs) distilled from IB-BERT_LARGE
with the recipe of configs/mobilebert_distill.py: progressive knowledge transfer, 24 phases
of 10k steps, then 500k steps of pretraining distillation, LAMB at 1.5e-3, global batch 2048
of 512-token sequences.

    python distill.py --config configs/mobilebert_tiny_distill.py \
        --workdir gs://BUCKET/mobilebert-tiny --config.teacher=gs://BUCKET/ib-bert

The teacher is configs/mobilebert_teacher.py's workdir; the data section matches it, so the
held-out documents are the teacher's too. See configs/mobilebert_distill.py for the
strategy switches of the paper's comparison.
"""

from squeezemobile_jax.tasks.distill import mobilebert_recipe


def get_config():
    return mobilebert_recipe("mobilebert-tiny")
