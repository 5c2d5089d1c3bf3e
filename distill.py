"""MobileBERT distillation: `python distill.py --config configs/mobilebert_distill.py
--config.teacher=TEACHER_WORKDIR_OR_HF_DIR --workdir DIR`.

Progressive layer-wise knowledge transfer, then pretraining distillation, in one resumable
run (see `squeezemobile_jax.tasks.distill`).
"""

# Imports under the guard: the processes that make pretraining batches start from this file
# and need none of it.
if __name__ == "__main__":
    from squeezemobile_jax.cli import main
    from squeezemobile_jax.tasks.distill import run

    main(run)
