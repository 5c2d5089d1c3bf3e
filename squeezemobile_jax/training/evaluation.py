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
import math
from collections.abc import Callable, Iterable, Iterator, Mapping

import jax
import jax.extend
import numpy as np
from flax import nnx

from squeezemobile_jax.training.mesh import global_batch

MetricFn = Callable[[nnx.Module, Mapping[str, jax.Array]], Mapping[str, jax.Array]]

# XLA:CPU runs matmuls as YNNPACK fusions by default, which suits our training steps (forward,
# backward and update). A forward pass alone mostly runs faster with its matmuls on XNNPACK and
# its other fusions XLA's own (same-process A/B on 2 cores, float32, length 128): batch-1
# latency 25% lower for MobileBERT, 12% for SqueezeBERT, 4% for BERT-base; batch 32 14-16%
# lower for SqueezeBERT and BERT-base, unchanged for MobileBERT (net of a cost: with XNNPACK on,
# XLA splits softmax and LayerNorm reductions in two, 2-3x slower). MobileBERT's training step is
# 10% slower under the same options, so only forward-only programs get them (they are per
# compilation). Some large weights run slower on XNNPACK (and Eigen) than on YNNPACK:
# IB-BERT's 1024 x 4096 FFN at 60-80 GFLOP/s against 105-125, a 2048 x 2048 weight 13% slower,
# and IB-BERT's forward is 20-25% slower under the options; every weight of the student trunks
# and BERT-base's 768 x 3072 runs as fast or faster. Programs with a weight as large as
# `LARGE_MATMUL_WEIGHT` therefore keep the defaults (conservatively: that also covers the MLM
# vocabulary projection, which XNNPACK runs as fast or faster).
# Attention pays for the options: its two batched matmuls and softmax run as separate kernels
# (the scores matmul, whose keys operand is transposed, at half the rate of the context one),
# where the defaults run all of it as one YNNPACK fusion, 1.3-2x as fast at batch 32.
# Adding YNNPACK's reduction fusions to the options brings that fusion back (SqueezeBERT at
# batch 32 about 6% faster), but they also absorb the matmuls beside every LayerNorm, which
# makes BERT-base 9% slower; so they stay out. Adding YNNPACK's matmul fusions instead gives
# attention the defaults' speed as well, but YNNPACK then takes every matmul from XNNPACK:
# SqueezeBERT and BERT-base 18% and 11% slower at batch 32, MobileBERT 66% at batch 1.
# Dropping tree_reduction_rewriter, the XLA pass behind the split reductions above, helps only
# MobileBERT at batch 1 (6%); SqueezeBERT and BERT-base get 43% and 17% slower at batch 1 (in
# SqueezeBERT each LayerNorm statistic then fuses, and recomputes, the transpose out of the
# grouped layout that feeds it).
CPU_INFERENCE_COMPILER_OPTIONS = {
    "xla_cpu_use_xnnpack": True,
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_cpu_experimental_xnn_fusion_type": (
        "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE"
    ),
}
# Programs with a matmul weight of at least this many elements keep XLA's defaults.
LARGE_MATMUL_WEIGHT = 3 * 2**20


def dot_general_equations(
    jaxpr: jax.extend.core.Jaxpr, times: int = 1
) -> Iterator[tuple[jax.extend.core.JaxprEqn, int]]:
    """The matmuls of `jaxpr` in program order: each `dot_general` equation of it and of its
    sub-jaxprs (jit, scan, remat and custom-derivative bodies), with how many times one call
    runs it (a scan body's equations `length` times; other sub-jaxprs count once)."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            yield eqn, times
        repeats = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from dot_general_equations(sub, times * repeats)


def largest_matmul_weight(jaxpr: jax.extend.core.Jaxpr) -> int:
    """Elements of the largest right-hand operand of any matmul in `jaxpr` or its sub-jaxprs
    (scan and jit bodies), batch dimensions excluded: the biggest weight matrix of a model."""
    largest = 0
    for eqn, _ in dot_general_equations(jaxpr):
        (_, _), (_, rhs_batch) = eqn.params["dimension_numbers"]
        shape = eqn.invars[1].aval.shape
        largest = max(largest, math.prod(n for i, n in enumerate(shape) if i not in rhs_batch))
    return largest


def inference_jit(fun: Callable | None = None, /, **jit_kwargs) -> Callable:
    """`jax.jit` for forward-only functions (prediction, evaluation, latency measurements).

    On a CPU backend the function is compiled with `CPU_INFERENCE_COMPILER_OPTIONS` unless one
    of its matmuls has a weight of `LARGE_MATMUL_WEIGHT` elements or more (decided from the
    traced program, once per argument signature, from the trace the compilation uses);
    elsewhere with XLA's defaults.
    Usable as `@inference_jit` or `@inference_jit(static_argnums=0)`; the result is called like
    the jitted function and has its `lower` and `trace`. Nothing is looked up at decoration
    time, so decorating at import time does not start JAX's backends.
    """
    if fun is None:
        return functools.partial(inference_jit, **jit_kwargs)
    static_argnums = jit_kwargs.get("static_argnums", ())
    static_argnums = (static_argnums,) if isinstance(static_argnums, int) else static_argnums
    with_options: dict[object, bool] = {}

    @functools.cache
    def jitted(options: bool) -> Callable:
        return jax.jit(
            fun, compiler_options=CPU_INFERENCE_COMPILER_OPTIONS if options else None, **jit_kwargs
        )

    def select(args: tuple, kwargs: dict) -> Callable:
        if jax.default_backend() != "cpu":
            return jitted(False)
        dynamic = [a for i, a in enumerate(args) if i not in static_argnums]
        leaves, treedef = jax.tree.flatten((dynamic, kwargs))
        key = (
            tuple(args[i] for i in static_argnums),
            treedef,
            tuple((np.shape(x), getattr(x, "dtype", type(x))) for x in leaves),
        )
        if key not in with_options:
            # JAX caches traces by function and signature across both jits: this is the only
            # trace of `fun` for the signature, whichever jit then compiles it.
            traced = jitted(True).trace(*args, **kwargs)
            with_options[key] = largest_matmul_weight(traced.jaxpr.jaxpr) < LARGE_MATMUL_WEIGHT
        return jitted(with_options[key])

    @functools.wraps(fun)
    def call(*args, **kwargs):
        return select(args, kwargs)(*args, **kwargs)

    call.lower = lambda *args, **kwargs: select(args, kwargs).lower(*args, **kwargs)
    call.trace = lambda *args, **kwargs: select(args, kwargs).trace(*args, **kwargs)
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
