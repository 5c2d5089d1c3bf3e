"""Pretraining and fine-tuning: `python train.py --config configs/NAME.py --workdir DIR`.

The config's `task` field picks the task: pretrain (MLM + NSP/SOP), glue, squad.
"""

# Imports under the guard: the processes that make pretraining batches start from this file
# and need none of it.
if __name__ == "__main__":
    from squeezemobile_jax.cli import main
    from squeezemobile_jax.tasks import run_task

    main(run_task)
