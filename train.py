"""Pretraining and fine-tuning: `python train.py --config configs/NAME.py --workdir DIR`.

The config's `task` field picks the task: pretrain (MLM + NSP/SOP), glue, squad.
"""

from squeezemobile_jax.cli import main
from squeezemobile_jax.tasks import run_task

if __name__ == "__main__":
    main(run_task)
