"""Shared command-line entry for `train.py`, `distill.py` and `eval_glue.py`.

    python train.py --config configs/NAME.py[:ARGS] [--config.x.y=VALUE ...] [--workdir DIR]

Without `--workdir`, the run goes to `config.workdir` or `workdirs/<config file name>`.
Running again on the same workdir resumes from its newest checkpoint.
"""

from __future__ import annotations

from squeezemobile_jax import cpu_tuning

cpu_tuning.configure_host_malloc()  # before JAX starts its CPU worker threads

import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, exports).")


def default_workdir(config: Any) -> str:
    if config.get("workdir"):
        return config.workdir
    config_file = flags.FLAGS["config"].config_filename
    name = os.path.splitext(os.path.basename(config_file.split(":")[0]))[0]
    return os.path.join("workdirs", name)


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # absl routes its own messages through the standard logging module.
    logging.getLogger("absl").setLevel(logging.WARNING)


def main(run: Callable[[Any, str], Any]) -> None:
    """Parses `--config`/`--workdir` and calls `run(config, workdir)`."""

    def _main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        if _CONFIG.value is None:
            raise app.UsageError("--config is required, e.g. --config configs/quickstart.py")
        setup_logging()
        notice = cpu_tuning.host_malloc_notice()
        if notice:
            logging.getLogger(__name__).info(notice)
        run(_CONFIG.value, _WORKDIR.value or default_workdir(_CONFIG.value))

    app.run(_main)
