"""Evaluation helpers: jitted per-batch sums over a whole (padded) eval set, compiled with
`inference_jit` (forward-only programs; see `squeezemobile_jax.cpu_tuning`).

The task's metric function returns per-batch **sums** (e.g. number correct, summed loss,
number of real examples, with padded rows weighted 0); they are added up on the host in
float64, so the final averages are exact over the whole set (no mean of means, no dropped
remainder)::

    summed = summed_metrics(lambda model, b: {"correct": ..., "count": b["weight"].sum()})
    sums = summed(model, loader.eval_batches(), mesh)
    accuracy = sums["correct"] / sums["count"]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import jax
import numpy as np
from flax import nnx

from squeezemobile_jax.cpu_tuning import inference_jit
from squeezemobile_jax.training.mesh import global_batch

MetricFn = Callable[[nnx.Module, Mapping[str, jax.Array]], Mapping[str, jax.Array]]


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
