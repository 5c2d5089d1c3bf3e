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

from squeezemobile_jax.tasks.common import model_section
from squeezemobile_jax.tasks.distill import default_config
from squeezemobile_jax.tasks.pretrain import corpus_section


def get_config():
    c = default_config()
    c.model = model_section("mobilebert-tiny", compute_dtype="bfloat16", scan_layers=True)
    c.distill.teacher_compute_dtype = "bfloat16"
    c.distill.strategy = "progressive"
    c.distill.stage1.steps_per_layer = 10_000
    c.distill.stage1.joint_steps = 240_000
    c.distill.stage1.learning_rate = 1.5e-3
    c.distill.stage2.num_steps = 500_000
    c.distill.stage2.alpha = 0.5
    c.distill.stage2.temperature = 1.0
    c.data.corpus = corpus_section(
        kind="hf",
        name="wikimedia/wikipedia",
        config="20231101.en",
        sentence_split="punctuation",
    )
    c.data.task = "nsp"
    c.data.max_seq_length = 512
    c.data.max_predictions_per_seq = 20
    c.data.global_batch_size = 2048
    c.data.eval_documents = 2000
    c.data.eval_batch_size = 512
    c.data.num_proc = 16
    c.train.log_every = 100
    c.train.eval_every = 10_000
    c.checkpoint.every_steps = 2000
    c.mesh.fsdp = True
    c.optimizer.name = "lamb"
    c.optimizer.learning_rate = 1.5e-3  # stage 2; stage 1 uses distill.stage1.learning_rate
    c.optimizer.schedule.warmup_steps = 10_000
    c.optimizer.schedule.end_ratio = 1e-4
    c.optimizer.stacked_params = (("/layers/", 1),)
    return c
