"""Tasks: pretrain, distill, glue, squad, each with `run(config, workdir) -> result`.
Each task is a folder holding everything of its task (data readers, losses, metrics,
post-processing, `pipeline.py` with the run); `common` holds what every task shares (the
model section, model specs, loading, the run's tokenizer). A task
knows its model head, loss, metrics, evaluation and post-processing; the generic loop in
`training/` does the rest.

`config.task` names the task; `run_task` imports its module lazily so a task's
dependencies load only when it runs. A task package exports its public names lazily too
(`lazy_exports`), so importing one light module of it (e.g. `tasks.squad.metrics` for the
official scorer) does not load JAX.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

TASKS = {
    "pretrain": "squeezemobile_jax.tasks.pretrain",
    "distill": "squeezemobile_jax.tasks.distill",
    "glue": "squeezemobile_jax.tasks.glue",
    "squad": "squeezemobile_jax.tasks.squad",
}


def run_task(config: ml_collections.ConfigDict, workdir: str) -> Any:
    """Runs `config.task` in `workdir` (created if needed)."""
    name = config.get("task")
    if name not in TASKS:
        raise ValueError(f"config.task={name!r}: choose one of {sorted(TASKS)}")
    return importlib.import_module(TASKS[name]).run(config, workdir)


def lazy_exports(
    package: str, modules: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], list[str]]:
    """(`__getattr__`, `__all__`) for a package re-exporting `modules` = {submodule: names}:
    a name is imported from its submodule on first access."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__, sorted(where)
