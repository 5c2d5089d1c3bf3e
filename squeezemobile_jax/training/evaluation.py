"""Evaluation helpers: `inference_jit` for forward-only programs, and jitted per-batch sums
over a whole (padded) eval set.

The task's metric function returns per-batch **sums** (e.g. number correct, summed loss,
number of real examples, with padded rows weighted 0); they are added up on the host in
float64, so the final averages are exact over the whole set (no mean of means, no dropped
remainder)::

    summed = summed_metrics(lambda model, b: {"correct": ..., "count": b["weight"].sum()})
    sums = summed(model, loader.eval_batches(), mesh)
    accuracy = sums["correct"] / sums["count"]
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping

import jax
import numpy as np
from flax import nnx

from squeezemobile_jax.training.mesh import global_batch

MetricFn = Callable[[nnx.Module, Mapping[str, jax.Array]], Mapping[str, jax.Array]]

# XLA:CPU runs matmuls as YNNPACK fusions by default, which suits our training steps (forward,
# backward and update). A forward pass alone runs faster with its matmuls on XNNPACK and its
# other fusions XLA's own (same-process A/B on 2 cores, float32, length 128): batch-1 latency
# 25% lower for MobileBERT, 12% for SqueezeBERT, 4% for BERT-base; batch 32 14-16% lower for
# SqueezeBERT and BERT-base, unchanged for MobileBERT. MobileBERT's training step is 10% slower
# under the same options, so only forward-only programs get them (they are per compilation).
CPU_INFERENCE_COMPILER_OPTIONS = {
    "xla_cpu_use_xnnpack": True,
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_cpu_experimental_xnn_fusion_type": (
        "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE"
    ),
}


def inference_compiler_options() -> dict[str, object] | None:
    """`CPU_INFERENCE_COMPILER_OPTIONS` on a CPU backend; None (the defaults) elsewhere."""
    return dict(CPU_INFERENCE_COMPILER_OPTIONS) if jax.default_backend() == "cpu" else None


def inference_jit(fun: Callable | None = None, /, **jit_kwargs) -> Callable:
    """`jax.jit` for forward-only functions (prediction, evaluation, latency measurements),
    compiled with `inference_compiler_options()`. Usable as `@inference_jit` or
    `@inference_jit(static_argnums=0)`; the result is called like the jitted function and has
    its `lower`. The backend is looked up at the first use, so decorating at import time does
    not start JAX's backends.
    """
    if fun is None:
        return functools.partial(inference_jit, **jit_kwargs)

    @functools.cache
    def jitted() -> Callable:
        return jax.jit(fun, compiler_options=inference_compiler_options(), **jit_kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        return jitted()(*args, **kwargs)

    call.lower = lambda *args, **kwargs: jitted().lower(*args, **kwargs)
    return call


def summed_metrics(
    metric_fn: MetricFn,
) -> Callable[[nnx.Module, Iterable[Mapping[str, np.ndarray]], jax.sharding.Mesh], dict]:
    """Wraps ``metric_fn(model, batch) -> {name: scalar sum}`` into a whole-set evaluator.

    The returned ``evaluate(model, host_batches, mesh) -> {name: float}`` builds global
    batches from each process's host-local arrays, runs `metric_fn` under `inference_jit`
    (compiled once per model structure and batch shape) and sums the results over all batches.
    """

    @inference_jit(static_argnums=0)
    def per_batch(graphdef: nnx.GraphDef, state: nnx.State, batch: Mapping[str, jax.Array]):
        return dict(metric_fn(nnx.merge(graphdef, state), batch))

    def evaluate(
        model: nnx.Module, host_batches: Iterable[Mapping[str, np.ndarray]], mesh
    ) -> dict[str, float]:
        graphdef, state = nnx.split(model)
        outs = [per_batch(graphdef, state, global_batch(b, mesh)) for b in host_batches]
        if not outs:
            return {}
        fetched = jax.device_get(outs)  # one sync at the end keeps dispatch asynchronous
        return {k: float(np.sum([np.float64(o[k]) for o in fetched])) for k in fetched[0]}

    return evaluate
