"""Training logs: ``metrics.jsonl``, tensorboardX events, a tqdm bar or log lines.

Only process 0 writes. ``metrics.jsonl`` gets one JSON object per logged step
(``{"step": 100, "loss": ..., ...}``) and is appended to across restarts, so after a resume
a step can appear twice: the later line is the one that counts. Tensorboard events go to the
workdir itself. On a terminal a tqdm bar shows progress; otherwise each write is a log line.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
from collections.abc import Mapping

import jax

from squeezemobile_jax import fileio

log = logging.getLogger(__name__)

# Dense peak FLOP/s per device by `device_kind` (bf16 on accelerators). Only used for MFU
# when `config.train.peak_flops_per_device` is not set.
_PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "NVIDIA A100": 312e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
}


def peak_flops_per_device(device_kind: str | None = None) -> float | None:
    """Known peak FLOP/s of a device kind (prefix match), or None."""
    kind = jax.devices()[0].device_kind if device_kind is None else device_kind
    for prefix, flops in _PEAK_FLOPS.items():
        if kind.startswith(prefix):
            return flops
    return None


@functools.cache
def measured_peak_flops(size: int = 2048, repeats: int = 20, dtype: str = "float32") -> float:
    """FLOP/s of one device on a large matmul in `dtype` (best of `repeats`, enough to ride out
    a busy neighbour on a shared host): the peak MFU is measured against on devices without a
    known figure (CPUs). Measured once per process and arguments."""
    import time

    import jax.numpy as jnp

    device = jax.devices()[0]
    a = jax.device_put(jnp.ones((size, size), dtype), device)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def throughput(
    examples: float,
    seconds: float,
    n_devices: int,
    tokens: float | None = None,
    flops_per_example: float | None = None,
    peak_flops: float | None = None,
    input_wait: float | None = None,
) -> dict[str, float]:
    """examples/s, tokens/s, model-FLOPs utilisation and the input-wait share of an interval.

    MFU = flops_per_example * examples/s / (peak_flops * n_devices); flops_per_example
    counts the forward and backward pass (e.g. about 6 * params * tokens per example).
    input_wait_fraction = input_wait / seconds (the seconds the device waited for input).
    """
    if seconds <= 0:
        return {}
    out = {"examples_per_sec": examples / seconds}
    if tokens is not None:
        out["tokens_per_sec"] = tokens / seconds
    if flops_per_example and peak_flops:
        out["mfu"] = flops_per_example * out["examples_per_sec"] / (peak_flops * n_devices)
    if input_wait is not None:
        out["input_wait_fraction"] = input_wait / seconds
    return out


def _jsonable(v: float) -> float | str:
    v = float(v)
    return v if math.isfinite(v) else str(v)


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without torch: tensorboardX imports torch, where
    installed, only to accept its tensors, and that costs seconds of start-up; we log floats."""
    hide_torch = "torch" not in sys.modules
    if hide_torch:
        sys.modules["torch"] = None  # makes `import torch` raise ImportError, which it handles
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hide_torch:
            del sys.modules["torch"]
    return SummaryWriter


class MetricWriter:
    """Writes scalar metrics per step to jsonl, tensorboard and the console (process 0)."""

    def __init__(
        self,
        workdir: str | os.PathLike,
        total_steps: int,
        *,
        initial_step: int = 0,
        enabled: bool | None = None,
        progress_bar: bool | None = None,
    ) -> None:
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.total_steps = total_steps
        self._bar = None
        self._tb = None
        self._jsonl = None
        if not self.enabled:
            return
        self._jsonl = fileio.AppendOnlyFile(fileio.join(workdir, "metrics.jsonl"))
        self._tb = _summary_writer_class()(logdir=os.fspath(workdir))
        if progress_bar is None:
            progress_bar = sys.stderr.isatty()
        if progress_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, dynamic_ncols=True)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Records `metrics` (name -> scalar) for `step`."""
        if not self.enabled:
            return
        values = {k: float(v) for k, v in metrics.items()}
        self._jsonl.write(
            json.dumps({"step": int(step), **{k: _jsonable(v) for k, v in values.items()}}) + "\n"
        )
        self._jsonl.flush()
        for name, value in values.items():
            self._tb.add_scalar(name, value, global_step=int(step))
        self._tb.flush()
        shown = {k: f"{values[k]:.4g}" for k in ("loss", "lr", "grad_norm") if k in values}
        if self._bar is not None:
            self._bar.n = int(step)
            self._bar.set_postfix(shown, refresh=True)
        else:
            text = " ".join(f"{k}={v:.5g}" for k, v in values.items())
            log.info("step %d/%d %s", step, self.total_steps, text)

    def close(self) -> None:
        """Flushes and closes the files and the bar."""
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()
