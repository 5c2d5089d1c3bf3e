"""`train_and_evaluate`: the one generic training loop (mesh -> state -> restore -> steps).

How a task plugs in::

    task = Task(
        loss_fn=loss_fn,          # (model, batch, rng) -> (scalar loss, {name: scalar})
        eval_fn=eval_fn,          # (model, mesh, step) -> {name: float}; optional
        count_fn=lambda b: {"examples": len(b["input_ids"]), "tokens": b["input_ids"].size},
        flops_per_example=6 * n_params * seq_len,            # optional, for MFU
    )
    result = train_and_evaluate(config, workdir, task, model, batches)

* `model` is an `nnx.Module` (or a zero-argument function building one, which is then
  initialised directly into its shardings). Variables matching ``task.trainable`` (default
  `nnx.Param`) are trained; everything else (a teacher, RNG state) is held fixed.
* ``batches(start_step)`` returns an iterator of this process's share of each global batch,
  a dict of NumPy arrays with leading dimension ``global_batch / process_count``, starting at
  batch `start_step` (so a resumed run sees the same data).
* ``loss_fn`` runs inside `jax.jit` on global arrays; it switches the model to train mode
  itself (e.g. ``model.train()``) and takes its randomness from `rng`. With
  ``loss_takes_step=True`` it is called as ``loss_fn(model, batch, rng, step=step)``.
* ``eval_fn`` runs outside jit with the current params (sharded arrays); it gets the mesh
  to build its own global batches (`mesh.global_batch`, `evaluation.sum_over_batches`).
* ``lr_scales`` (see `optimizers.per_path_lr_scales`) scales each parameter's update;
  ``checkpoint_metadata(step) -> dict`` is stored as JSON with every checkpoint.

Config read (see `config.training_defaults`): ``seed``, ``train.{num_steps,
grad_accum_steps, log_every, eval_every, eval_at_start, eval_at_end, nonfinite, param_dtype,
peak_flops_per_device}``, ``checkpoint.{every_steps, max_to_keep, async_save}``,
``mesh.{fsdp, fsdp_min_size_mb}``, ``optimizer.*`` (unless an `Optimizer` is passed).
Call `mesh.maybe_initialize_distributed(config)` before building the model.

Non-finite steps: the step itself never applies a non-finite update (see `step`). The loop
sees the flag when it next fetches metrics (a log step, checkpoint or eval) and then raises
`NonFiniteError` (``train.nonfinite='stop'``, nothing more is saved) or logs a warning and
goes on (``'skip'``). Checkpoints are written only after every earlier step was checked.

The workdir receives ``config.json``, ``metrics.jsonl``, tensorboard events and
``checkpoints/``. Each log row carries throughput (``examples_per_sec``, ``tokens_per_sec``,
``mfu``) and ``input_wait_fraction``: the share of the interval's wall time spent waiting
for a batch after the previous step had finished, i.e. with the device idle for want of input
(near 0 when the input pipeline keeps ahead of the step).
Restarting on the same workdir resumes from the newest good checkpoint. SIGTERM (single
process) or a preemption notice (multi-process) saves a checkpoint at the next step boundary
and returns with ``preempted=True``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from squeezemobile_jax import fileio
from squeezemobile_jax.training import mesh as mesh_lib
from squeezemobile_jax.training.checkpoint import Checkpointer
from squeezemobile_jax.training.metric_writer import (
    MetricWriter,
    measured_peak_flops,
    peak_flops_per_device,
    throughput,
)
from squeezemobile_jax.training.optimizers import LrScales, Optimizer, build_optimizer
from squeezemobile_jax.training.preemption import TerminationSignal
from squeezemobile_jax.training.step import LossFn, make_train_step
from squeezemobile_jax.training.train_state import TrainState, create_train_state

log = logging.getLogger(__name__)
PyTree = Any
HostBatch = Mapping[str, np.ndarray]


class NonFiniteError(FloatingPointError):
    """Raised when a step has a non-finite loss / gradient norm and ``nonfinite='stop'``."""


@dataclasses.dataclass
class Task:
    """What a task gives the loop (see the module docstring)."""

    loss_fn: LossFn
    eval_fn: Callable[[nnx.Module, jax.sharding.Mesh, int], Mapping[str, float]] | None = None
    trainable: Any = nnx.Param
    loss_takes_step: bool = False
    lr_scales: LrScales | None = None
    count_fn: Callable[[HostBatch], Mapping[str, float]] | None = None
    flops_per_example: float | None = None
    checkpoint_metadata: Callable[[int], dict] | None = None


@dataclasses.dataclass
class TrainResult:
    """What `train_and_evaluate` returns."""

    state: TrainState
    model: nnx.Module  # the model with the final params
    step: int
    preempted: bool
    restored_step: int | None
    restored_metadata: dict
    eval_metrics: dict[str, float]


def _to_global(x: Any, sharding: jax.sharding.Sharding) -> jax.Array:
    """Places an array that is identical on every process onto a (global) sharding."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _to_global(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def _cast_floats(tree: PyTree, dtype: str) -> PyTree:
    def cast(x: jax.Array) -> jax.Array:
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def _default_counts(batch: HostBatch) -> dict[str, float]:
    first = next(iter(batch.values()))
    return {"examples": float(np.shape(first)[0])}


def _finished(metrics: dict[str, jax.Array]) -> bool:
    """Whether the step that returned `metrics` has finished on the device."""
    return all(x.is_ready() for x in jax.tree.leaves(metrics))


def _check_batch_size(batch: HostBatch, accum: int) -> None:
    """The global batch must split into `accum` micro-batches spread over every device."""
    rows = np.shape(next(iter(batch.values())))[0] * jax.process_count()
    if rows % (accum * jax.device_count()):
        raise ValueError(
            f"Global batch of {rows} examples cannot be split into train.grad_accum_steps="
            f"{accum} micro-batches over {jax.device_count()} devices; make it a multiple of "
            f"{accum * jax.device_count()}."
        )


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    if jax.process_index() != 0:
        return
    fileio.write_text(
        fileio.join(workdir, "config.json"), config.to_json_best_effort(indent=2, sort_keys=True)
    )


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    task: Task,
    model: nnx.Module | Callable[[], nnx.Module],
    batches: Callable[[int], Iterator[HostBatch]],
    optimizer: Optimizer | None = None,
) -> TrainResult:
    """Trains `model` on `task` for ``config.train.num_steps`` steps (see module doc)."""
    workdir = os.fspath(workdir)
    train_cfg = config.train
    num_steps = int(train_cfg.num_steps)
    accum = int(train_cfg.get("grad_accum_steps", 1) or 1)
    log_every = max(int(train_cfg.get("log_every", 100) or 1), 1)
    eval_every = int(train_cfg.get("eval_every", 0) or 0)
    nonfinite_mode = train_cfg.get("nonfinite", "stop")
    if nonfinite_mode not in ("stop", "skip"):
        raise ValueError(f"train.nonfinite={nonfinite_mode!r}; use 'stop' or 'skip'.")
    ckpt_cfg = config.get("checkpoint", ml_collections.ConfigDict())
    ckpt_every = int(ckpt_cfg.get("every_steps", 1000) or 0)
    mesh_cfg = config.get("mesh", ml_collections.ConfigDict())
    _write_config(config, workdir)

    # ----------------------------------------------------------------- Set up mesh
    mesh = mesh_lib.make_mesh()
    repl = mesh_lib.replicated(mesh)
    fsdp = bool(mesh_cfg.get("fsdp", False))
    min_mb = float(mesh_cfg.get("fsdp_min_size_mb", 4.0))
    log.info(
        "Mesh: %s over %d devices (%d processes)",
        dict(mesh.shape),
        jax.device_count(),
        jax.process_count(),
    )

    # ------------------------------------------------- Create model & optimizer
    if optimizer is None:
        optimizer = build_optimizer(config.optimizer, num_steps, task.lr_scales)
    tx = optimizer.tx
    param_dtype = train_cfg.get("param_dtype", "float32")
    if isinstance(model, nnx.Module):
        graphdef, params, frozen = nnx.split(model, task.trainable, ...)
        param_sh = mesh_lib.state_shardings(params, mesh, fsdp, min_mb)
        frozen_sh = mesh_lib.state_shardings(frozen, mesh, fsdp, min_mb)
        params = jax.tree.map(_to_global, params, param_sh)
        frozen = jax.tree.map(_to_global, frozen, frozen_sh)
    else:
        model_fn = model
        graphdef, abs_params, abs_frozen = nnx.split(nnx.eval_shape(model_fn), task.trainable, ...)
        param_sh = mesh_lib.state_shardings(abs_params, mesh, fsdp, min_mb)
        frozen_sh = mesh_lib.state_shardings(abs_frozen, mesh, fsdp, min_mb)
        params, frozen = jax.jit(
            lambda: nnx.split(model_fn(), task.trainable, ...)[1:],
            out_shardings=(param_sh, frozen_sh),
        )()

    # ------------------------------------------------------ Shard & place state
    def init_state(p: nnx.State) -> TrainState:
        return create_train_state(_cast_floats(p, param_dtype), tx)

    abstract_state = jax.eval_shape(init_state, params)
    state_sh = mesh_lib.state_shardings(abstract_state, mesh, fsdp, min_mb)
    state = jax.jit(init_state, out_shardings=state_sh)(params)
    del params
    base_key = jax.jit(lambda: jax.random.key(int(config.get("seed", 0))), out_shardings=repl)()

    # ----------------------------------------------------------- Update step
    step_fn = make_train_step(
        graphdef,
        task.loss_fn,
        tx,
        schedule=optimizer.schedule,
        grad_accum_steps=accum,
        loss_takes_step=task.loss_takes_step,
        mesh=mesh,
    )
    train_step = jax.jit(step_fn, out_shardings=(state_sh, repl), donate_argnums=(0,))

    # ------------------------------------------------------ Load checkpoint
    ckpt = Checkpointer(
        fileio.join(workdir, "checkpoints"),
        max_to_keep=ckpt_cfg.get("max_to_keep", 3),
        async_save=bool(ckpt_cfg.get("async_save", True)),
    )
    restored_step, restored_meta = None, {}
    restored = ckpt.restore(state)
    if restored is not None:
        state, restored_meta = restored
        restored_step = int(restored_meta["step"])
        log.info("Resuming from step %d", restored_step)
    start = int(jax.device_get(state.step))

    # ------------------------------------------------------------ Train loop
    writer = MetricWriter(workdir, num_steps, initial_step=start)
    count_fn = task.count_fn or _default_counts
    peak = train_cfg.get("peak_flops_per_device", None) or peak_flops_per_device()
    if peak is None and task.flops_per_example:
        peak = measured_peak_flops()
        log.info("MFU is relative to a measured matmul peak of %.3g FLOP/s per device", peak)
    pending: list[tuple[int, dict[str, jax.Array], dict[str, float]]] = []
    window = {
        "examples": 0.0,
        "tokens": 0.0,
        "input_wait": 0.0,
        "time": time.perf_counter(),
        "has_tokens": False,
    }
    eval_metrics: dict[str, float] = {}
    preempted = False

    def flush(entries: list[tuple[int, dict[str, jax.Array], dict[str, float]]]) -> None:
        """Fetches finished steps' metrics, checks finiteness, writes the due log lines."""
        fetched = jax.device_get([m for _, m, _ in entries])
        for (done, _, counts), values in zip(entries, fetched):
            window["examples"] += counts.get("examples", 0.0) * jax.process_count()
            if "tokens" in counts:
                window["tokens"] += counts["tokens"] * jax.process_count()
                window["has_tokens"] = True
            if float(values["finite"]) == 0.0:
                msg = (
                    f"Non-finite values at step {done}: loss={float(values['loss'])}, "
                    f"grad_norm={float(values['grad_norm'])}. The update was not applied."
                )
                if nonfinite_mode == "stop":
                    raise NonFiniteError(
                        f"{msg} Stopping (train.nonfinite='stop'); the last good checkpoint is "
                        f"step {ckpt.latest_step()} in {ckpt.directory}. Set "
                        "train.nonfinite='skip' to skip such steps instead."
                    )
                log.warning("%s Skipping it (train.nonfinite='skip').", msg)
            if done % log_every == 0 or done == num_steps:
                now = time.perf_counter()
                rates = throughput(
                    window["examples"],
                    now - window["time"],
                    jax.device_count(),
                    tokens=window["tokens"] if window["has_tokens"] else None,
                    flops_per_example=task.flops_per_example,
                    peak_flops=peak,
                    input_wait=window["input_wait"],
                )
                window.update(examples=0.0, tokens=0.0, input_wait=0.0, time=now)
                scalars = {k: float(v) for k, v in values.items()}
                writer.write(done, {**scalars, **rates})

    if task.eval_fn is not None and start == 0 and train_cfg.get("eval_at_start", False):
        with jax.set_mesh(mesh):
            initial = task.eval_fn(nnx.merge(graphdef, state.params, frozen), mesh, 0)
        writer.write(0, {f"eval/{k}": v for k, v in initial.items()})

    batch_iter = batches(start)
    try:
        with jax.set_mesh(mesh), TerminationSignal(enabled=jax.process_count() == 1) as term:
            for step in range(start, num_steps):
                waiting_since = time.perf_counter()
                try:
                    local_batch = next(batch_iter)
                except StopIteration:
                    raise RuntimeError(
                        f"The batch iterator ran out at step {step} of {num_steps}; make it "
                        "repeat (epochs) or lower train.num_steps."
                    ) from None
                if not pending or _finished(pending[-1][1]):  # else the device was busy
                    window["input_wait"] += time.perf_counter() - waiting_since
                if step == start:
                    _check_batch_size(local_batch, accum)
                counts = {k: float(v) for k, v in count_fn(local_batch).items()}
                batch = mesh_lib.global_batch(local_batch, mesh)
                state, metrics = train_step(state, frozen, batch, base_key)
                done = step + 1
                pending.append((done, metrics, counts))

                is_last = done == num_steps
                stop_now = term.received or ckpt.reached_preemption(done)
                save_now = is_last or stop_now or (ckpt_every and done % ckpt_every == 0)
                eval_now = task.eval_fn is not None and (
                    (eval_every and done % eval_every == 0)
                    or (is_last and train_cfg.get("eval_at_end", True))
                )
                if save_now or eval_now:
                    flush(pending)  # blocks: nothing non-finite may reach a checkpoint
                    pending = []
                elif len(pending) > 1 and any(
                    d % log_every == 0 for d, _, _ in pending[:-1]
                ):  # previous step's metrics: the current step is already queued
                    flush(pending[:-1])
                    pending = pending[-1:]
                if save_now:
                    meta = task.checkpoint_metadata(done) if task.checkpoint_metadata else None
                    ckpt.save(state, done, meta)
                if eval_now:
                    model_now = nnx.merge(graphdef, state.params, frozen)
                    eval_metrics = dict(task.eval_fn(model_now, mesh, done))
                    writer.write(done, {f"eval/{k}": v for k, v in eval_metrics.items()})
                if stop_now and not is_last:
                    log.warning("Stopping at step %d after saving a checkpoint.", done)
                    preempted = True
                    break
            if pending:
                flush(pending)
    finally:
        ckpt.close()
        writer.close()
        if hasattr(batch_iter, "close"):  # e.g. a prefetching iterator's thread
            batch_iter.close()

    final_step = int(jax.device_get(state.step))
    return TrainResult(
        state=state,
        model=nnx.merge(graphdef, state.params, frozen),
        step=final_step,
        preempted=preempted,
        restored_step=restored_step,
        restored_metadata=restored_meta,
        eval_metrics=eval_metrics,
    )
