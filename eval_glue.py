"""The GLUE benchmark: fine-tune on every task, report dev scores, write the submission.

    python eval_glue.py --config configs/glue.py:model=squeezebert --config.init=DIR \
        [--config.eval_glue.learning_rates='(3e-5,5e-5)'] [--workdir DIR]

Writes `dev_results.json` / `dev_results.md` and `submission.zip` (the 11 leaderboard files)
into the workdir; each task (and sweep point) runs in its own resumable sub-workdir.
"""

from squeezemobile_jax.cli import main
from squeezemobile_jax.tasks.glue import run_all_tasks

if __name__ == "__main__":
    main(run_all_tasks)
