"""Checkpoints: orbax `CheckpointManager` under ``workdir/checkpoints``.

Each checkpoint step directory holds three items:
  params     the trainable `nnx.State` (sharded arrays, restored straight into their shardings)
  opt_state  the optimizer state
  metadata   JSON: ``{"step", "nonfinite_steps", "task": {...}}``; ``task`` is whatever dict
             the task's ``checkpoint_metadata(step)`` returned (e.g. a distillation phase).

Restoring tries the newest step first; a checkpoint that cannot be read (truncated, corrupt)
or holds non-finite values is moved to ``checkpoints_corrupt/<step>`` with a warning and the
previous one is tried. Saves are asynchronous (the device-to-host copy happens at once, the
writing in the background); directories of unfinished saves are ignored by orbax.

Use `restore_params` to initialise a model from another run's checkpoint (params only).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from squeezemobile_jax.training.train_state import TrainState

PyTree = Any
log = logging.getLogger(__name__)


def _checkpoint_path(directory: str | os.PathLike) -> epath.Path:
    """An absolute path (orbax rejects relative ones); object-store paths pass unchanged."""
    path = os.fspath(directory)
    return epath.Path(path if "://" in path else os.path.abspath(path))


def _all_finite(tree: PyTree) -> bool:
    """True if every floating-point leaf of `tree` is finite (one jitted reduction)."""
    leaves = [x for x in jax.tree.leaves(tree) if jax.dtypes.issubdtype(x.dtype, np.inexact)]
    if not leaves:
        return True
    check = jax.jit(lambda xs: jnp.all(jnp.stack([jnp.isfinite(x).all() for x in xs])))
    return bool(check(leaves))


class Checkpointer:
    """Periodic, keep-N, async checkpoints of a `TrainState` plus JSON metadata."""

    def __init__(
        self, directory: str | os.PathLike, *, max_to_keep: int | None = 3, async_save: bool = True
    ) -> None:
        self.directory = _checkpoint_path(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                enable_async_checkpointing=async_save,
                create=True,
            ),
        )

    def all_steps(self) -> list[int]:
        """Steps of the finished checkpoints, ascending."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """Newest finished checkpoint step, or None."""
        return self._manager.latest_step()

    def save(self, state: TrainState, step: int, task_metadata: dict | None = None) -> None:
        """Starts saving `state` as checkpoint `step` (returns before the write finishes)."""
        if step in self._manager.all_steps():
            return
        metadata = {
            "step": int(step),
            "nonfinite_steps": int(jax.device_get(state.nonfinite_steps)),
            "task": task_metadata or {},
        }
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(state.params),
                opt_state=ocp.args.StandardSave(state.opt_state),
                metadata=ocp.args.JsonSave(metadata),
            ),
            force=True,
        )

    def restore(self, target: TrainState) -> tuple[TrainState, dict] | None:
        """Restores the newest readable checkpoint into the shapes/shardings of `target`.

        `target` is a `TrainState` of arrays or `jax.ShapeDtypeStruct`s with shardings.
        Returns ``(state, metadata)`` or None when there is no usable checkpoint.
        """
        abstract = jax.tree.map(_abstract, target)
        for step in reversed(self.all_steps()):
            try:
                restored = self._manager.restore(
                    step,
                    args=ocp.args.Composite(
                        params=ocp.args.StandardRestore(abstract.params),
                        opt_state=ocp.args.StandardRestore(abstract.opt_state),
                        metadata=ocp.args.JsonRestore(),
                    ),
                )
                params, opt_state = restored.params, restored.opt_state
                metadata = dict(restored.metadata)
                if not _all_finite((params, opt_state)):
                    raise ValueError("it holds non-finite values")
            except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is skipped
                log.warning(
                    "Checkpoint %s/%d cannot be used (%s: %s); moving it aside and trying the "
                    "previous one.",
                    self.directory,
                    step,
                    type(err).__name__,
                    err,
                )
                self._quarantine(step)
                continue
            state = TrainState(
                step=jax.device_put(np.int32(step), abstract.step.sharding),
                params=params,
                opt_state=opt_state,
                nonfinite_steps=jax.device_put(
                    np.int32(metadata.get("nonfinite_steps", 0)), abstract.nonfinite_steps.sharding
                ),
            )
            log.info("Restored checkpoint %s/%d", self.directory, step)
            return state, metadata
        return None

    def _quarantine(self, step: int) -> None:
        """Moves a bad step directory to ``<directory>_corrupt/<step>`` (process 0)."""
        if jax.process_index() == 0:
            dest_root = self.directory.parent / (self.directory.name + "_corrupt")
            dest_root.mkdir(parents=True, exist_ok=True)
            dest = dest_root / str(step)
            if dest.exists():
                dest.rmtree()
            (self.directory / str(step)).rename(dest)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"quarantine_checkpoint_{step}")
        self._manager.reload()

    def reached_preemption(self, step: int) -> bool:
        """True when the JAX preemption service reports a preemption notice (multi-host)."""
        return bool(self._manager.reached_preemption(int(step)))

    def wait_until_finished(self) -> None:
        """Blocks until pending asynchronous saves are written."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


def _abstract(x: Any) -> Any:
    if isinstance(x, jax.ShapeDtypeStruct):
        return x
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))


def read_metadata(directory: str | os.PathLike, step: int | None = None) -> dict:
    """The JSON metadata of checkpoint `step` (default: the newest) in `directory`."""
    with ocp.CheckpointManager(_checkpoint_path(directory)) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {directory}")
        restored = manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
        return dict(restored.metadata)


def save_params(
    directory: str | os.PathLike, params: PyTree, step: int = 0, metadata: dict | None = None
) -> None:
    """Writes a params-only checkpoint (no optimizer state) that `restore_params` reads: a
    model to initialise other runs from, not a run to resume."""
    with ocp.CheckpointManager(
        _checkpoint_path(directory), options=ocp.CheckpointManagerOptions(create=True)
    ) as manager:
        manager.save(
            int(step),
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params),
                metadata=ocp.args.JsonSave({"step": int(step), "task": metadata or {}}),
            ),
            force=True,
        )
        manager.wait_until_finished()


def restore_params(directory: str | os.PathLike, target: PyTree, step: int | None = None) -> PyTree:
    """Only the params of checkpoint `step` (default newest) of another run.

    `target`: the params tree (arrays or ShapeDtypeStructs with shardings) to restore into,
    e.g. ``nnx.state(model, nnx.Param)``.
    """
    with ocp.CheckpointManager(_checkpoint_path(directory)) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {directory}")
        abstract = jax.tree.map(_abstract, target)
        restored = manager.restore(
            step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract))
        )
        return restored.params
