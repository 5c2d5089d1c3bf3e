"""MobileBERT distilled from IB-BERT_LARGE as the paper's code does it: progressive
knowledge transfer, 24 phases of 10k steps (240k), then 500k steps of pretraining
distillation, LAMB at 1.5e-3, global batch 2048 of 512-token sequences.

    python distill.py --config configs/mobilebert_distill.py --workdir gs://BUCKET/mobilebert \
        --config.teacher=gs://BUCKET/ib-bert   # configs/mobilebert_teacher.py's workdir

The teacher runs in bfloat16 and both models are sharded FSDP-style. The data section
matches configs/mobilebert_teacher.py, so the held-out documents are the teacher's too.
The paper's comparison: `--config.distill.strategy=joint` (joint KT, 240k steps) or
`auxiliary` (transfer losses added to pretraining distillation);
`--config.distill.stage1.freeze_earlier_layers=True` freezes finished layers entirely.
"""

from squeezemobile_jax.tasks.distill import mobilebert_recipe


def get_config():
    return mobilebert_recipe("mobilebert-uncased")
