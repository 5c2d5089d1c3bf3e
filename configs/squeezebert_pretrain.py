"""SqueezeBERT pretraining as the paper did it: MLM + SOP from scratch with LAMB, global batch
8192, learning rate 2.5e-3 with 28% warmup, 56k steps at length 128 then 6k at length 512.

    python train.py --config configs/squeezebert_pretrain.py --workdir gs://BUCKET/squeezebert \
        --config.tokenizer.path=/path/to/bert-base-uncased/vocab.txt

The corpus defaults to English Wikipedia from the HF hub (the paper adds BookCorpus); point
`config.data.corpus` at local BERT-format text files offline (kind='text', paths=(...)).
Use `--config.train.grad_accum_steps` when 8192 sequences do not fit the devices at once.
"""

from squeezemobile_jax.tasks.common import model_section
from squeezemobile_jax.tasks.pretrain import corpus_section, default_config

PHASE1_STEPS, PHASE2_STEPS = 56_000, 6_000


def get_config():
    c = default_config()
    c.model = model_section("squeezebert-uncased")  # vocab 30528: bert-base-uncased, padded
    c.data.corpus = corpus_section(
        kind="hf",
        name="wikimedia/wikipedia",
        config="20231101.en",
        sentence_split="punctuation",
    )
    c.data.task = "sop"
    c.data.global_batch_size = 8192
    c.data.eval_documents = 2000
    c.data.eval_batch_size = 1024
    c.data.num_proc = 16
    c.data.num_workers = 8  # 8192 examples take ~2 s in one process
    c.phases = (
        {"num_steps": PHASE1_STEPS, "max_seq_length": 128, "max_predictions_per_seq": 20},
        {"num_steps": PHASE2_STEPS, "max_seq_length": 512, "max_predictions_per_seq": 80},
    )
    total = PHASE1_STEPS + PHASE2_STEPS
    c.train.num_steps = total
    c.train.log_every = 100
    c.train.eval_every = 2000
    c.checkpoint.every_steps = 1000
    c.optimizer.name = "lamb"
    c.optimizer.learning_rate = 2.5e-3
    c.optimizer.schedule.warmup_steps = int(0.28 * total)
    c.optimizer.schedule.decay_steps = total
    c.optimizer.stacked_params = (("/layers/", 1),)
    c.model.compute_dtype = "bfloat16"
    return c
