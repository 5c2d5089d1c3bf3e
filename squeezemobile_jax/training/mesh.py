"""Device mesh, shardings and global batches for data parallelism (optionally FSDP).

One mesh axis, ``data``, spans every device of every process. Batches are split along their
leading axis over ``data``. Parameters (and optimizer moments, which have the same shapes)
are either replicated or, with FSDP, split along their largest axis that the ``data`` size
divides, when they hold at least ``fsdp_min_size_mb`` megabytes. XLA inserts the gradient
all-reduce / all-gathers.

Each process supplies only its own rows of a global batch (``global_batch / process_count``),
as host-local NumPy arrays; `global_batch` stitches them into one global `jax.Array`, and
`to_host` brings a global array back to every process as NumPy.

Config read here: ``config.mesh.fsdp`` (bool), ``config.mesh.fsdp_min_size_mb`` (float),
``config.distributed.initialize`` (bool) and the optional ``coordinator_address``,
``num_processes``, ``process_id`` next to it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

DATA_AXIS = "data"
PyTree = Any


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """Calls `jax.distributed.initialize` when configured or when the environment says so.

    Must run before anything touches a device (so before building the model). It runs if
    ``config.distributed.initialize`` is true or ``JAX_COORDINATOR_ADDRESS`` is set; on Cloud
    TPU, Slurm and Kubernetes the call needs no arguments.
    """
    dist = config.get("distributed", ml_collections.ConfigDict())
    if not (dist.get("initialize", False) or os.environ.get("JAX_COORDINATOR_ADDRESS")):
        return
    kwargs = {}
    for name in ("coordinator_address", "num_processes", "process_id"):
        if dist.get(name, None) is not None:
            kwargs[name] = dist.get(name)
    jax.distributed.initialize(**kwargs)
    logging.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def make_mesh(devices: list[jax.Device] | None = None) -> jax.sharding.Mesh:
    """A 1-D ``('data',)`` mesh over all devices (Auto axis type: jit propagates shardings)."""
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), (jax.sharding.AxisType.Auto,), devices=devices
    )


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Sharding that keeps a full copy on every device."""
    return jax.sharding.NamedSharding(mesh, jax.P())


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Sharding of a batch array ``[global_batch, ...]`` split over ``data``."""
    return jax.sharding.NamedSharding(mesh, jax.P(DATA_AXIS))


def fsdp_spec(shape: tuple[int, ...], itemsize: int, n_shards: int, min_size_mb: float) -> Any:
    """PartitionSpec sharding the largest axis of `shape` divisible by `n_shards`.

    Arrays smaller than `min_size_mb` MB, or with no divisible axis, are replicated. Ties go
    to the last such axis.
    """
    size_mb = float(np.prod(shape, dtype=np.float64)) * itemsize / 2**20
    if n_shards <= 1 or size_mb < min_size_mb:
        return jax.P()
    best = None
    for axis, dim in enumerate(shape):
        if dim % n_shards == 0 and (best is None or dim >= shape[best]):
            best = axis
    if best is None:
        return jax.P()
    return jax.P(*([None] * best + [DATA_AXIS]))


def state_shardings(
    tree: PyTree, mesh: jax.sharding.Mesh, fsdp: bool = False, min_size_mb: float = 4.0
) -> PyTree:
    """NamedShardings for every array leaf of `tree` (arrays or ShapeDtypeStructs)."""

    def one(x: Any) -> jax.sharding.NamedSharding:
        shape = tuple(getattr(x, "shape", ()))
        if not fsdp or not shape:
            return replicated(mesh)
        itemsize = np.dtype(x.dtype).itemsize if _is_numeric(x) else 0
        spec = fsdp_spec(shape, itemsize, mesh.shape[DATA_AXIS], min_size_mb)
        return jax.sharding.NamedSharding(mesh, spec)

    return jax.tree.map(one, tree)


def _is_numeric(x: Any) -> bool:
    try:
        np.dtype(x.dtype)
    except TypeError:  # e.g. PRNG key arrays
        return False
    return True


def global_batch(
    local_batch: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh
) -> dict[str, jax.Array]:
    """Stitches each process's rows ``[global_batch / process_count, ...]`` into global arrays.

    Every process must pass the same keys with the same per-process shapes; process ``i``
    holds rows ``[i * n, (i + 1) * n)`` of the global batch.
    """
    sharding = batch_sharding(mesh)
    n_data = mesh.shape[DATA_AXIS]
    out = {}
    for key, value in local_batch.items():
        value = np.asarray(value)
        rows = value.shape[0] * jax.process_count() if value.ndim else 0
        if value.ndim == 0 or rows % n_data:
            raise ValueError(
                f"batch['{key}'] has {rows} rows in total (shape {value.shape} per process), "
                f"which the {n_data} devices of the 'data' axis cannot split evenly; make the "
                "global batch size a multiple of the device count."
            )
        out[key] = jax.make_array_from_process_local_data(sharding, value)
    return out


def to_host(x: jax.Array) -> np.ndarray:
    """All of `x` as a host NumPy array, on every process.

    An array spread over several processes is gathered across them (a collective: every
    process must call this for the same arrays in the same order); one this process holds
    entirely is copied from its devices.
    """
    if jax.process_count() > 1 and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
