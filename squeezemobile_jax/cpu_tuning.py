"""Every choice this project makes for XLA:CPU, in one place. Each can be turned off with an
environment variable; none changes a result beyond float rounding. Accelerators are untouched.

1. Host allocator keep mode (`configure_host_malloc`, $SQUEEZEMOBILE_JAX_HOST_MALLOC).
   What: glibc keeps freed memory for reuse (one malloc arena, no `mmap` for large blocks,
   no trimming of the heap top). XLA:CPU allocates every execution's temporary buffer (all
   activations of a training step: about 1.5 GB for SqueezeBERT at batch 8 x length 128) with
   `posix_memalign`; by default glibc serves such blocks with a fresh `mmap` and unmaps them
   on free, so each step page-faults in and zeroes its whole working set again.
   Gain: about a fifth of a CPU training step on 2 cores.
   Cost: resident memory stays at the run's peak, and the peak is higher, up to twice
   glibc's default (batch-8 training steps: BERT-base 4.0 GB default against 8.0 GB kept,
   SqueezeBERT 2.9 against 2.8-5.8 GB; the growth stopped within 40 steps of 200). It is on by
   default in the entry points, which say so at start (`host_malloc_notice`).
   Off: SQUEEZEMOBILE_JAX_HOST_MALLOC=default. It must be applied before JAX starts its CPU
   worker threads, so this module imports nothing heavy at the top and the entry points call
   it first. Other C libraries (musl, macOS) are left alone.

2. Forward-only compile options (`inference_jit`, $SQUEEZEMOBILE_JAX_CPU_INFERENCE_OPTIONS).
   What: prediction, evaluation and latency programs are compiled with their matmuls on
   XNNPACK and their other fusions XLA's own (`CPU_INFERENCE_COMPILER_OPTIONS`), instead of
   XLA's default YNNPACK fusions, which suit training steps better.
   Gain (2 cores, float32, length 128): batch-1 latency 25% lower for MobileBERT, 12% for
   SqueezeBERT, 4% for BERT-base; batch 32 14-16% lower for SqueezeBERT and BERT-base.
   Cost: some large weights run slower on XNNPACK (IB-BERT's forward 20-25% slower), so a
   program with a matmul weight of `LARGE_MATMUL_WEIGHT` elements or more keeps the defaults;
   one extra trace per argument signature to decide. BENCHMARKS.md's reading notes record the
   options tried and rejected.
   Off: SQUEEZEMOBILE_JAX_CPU_INFERENCE_OPTIONS=default.

3. Explicit attention on CPU (`use_fused_attention`, $SQUEEZEMOBILE_JAX_CPU_ATTENTION).
   What: `models.attention` computes scores, softmax and context itself, heads-major, rather
   than calling `jax.nn.dot_product_attention`, which has no fused kernel on XLA:CPU.
   Gain: attention alone (jitted, float32, 2 cores, 20 of 128 keys masked, three alternating
   rounds) runs 1.3-1.7x as fast: 9.9 against 16.3 ms for 12 heads of 64 at batch 8, 1.3
   against 1.7 ms for 4 heads of 32, 0.34 against 0.52 ms for those at batch 1 (one round of
   the first came out even). Cost: none known.
   Off: SQUEEZEMOBILE_JAX_CPU_ATTENTION=fused (takes the accelerators' path on the CPU too).
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import platform
from collections.abc import Callable

HOST_MALLOC_ENV = "SQUEEZEMOBILE_JAX_HOST_MALLOC"  # keep | default
MODES = ("keep", "default")
INFERENCE_OPTIONS_ENV = "SQUEEZEMOBILE_JAX_CPU_INFERENCE_OPTIONS"  # tuned | default
ATTENTION_ENV = "SQUEEZEMOBILE_JAX_CPU_ATTENTION"  # explicit | fused

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_host_malloc_kept = False  # whether keep mode was applied in this process

CPU_INFERENCE_COMPILER_OPTIONS = {
    "xla_cpu_use_xnnpack": True,
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_cpu_experimental_xnn_fusion_type": (
        "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE"
    ),
}
# Programs with a matmul weight of at least this many elements keep XLA's defaults (this also
# covers the MLM vocabulary projection, which XNNPACK runs as fast or faster: conservative).
LARGE_MATMUL_WEIGHT = 3 * 2**20


def _choice(env: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(env) or choices[0]
    if value not in choices:
        raise ValueError(f"{env}={value!r}: expected one of {choices}")
    return value


# ------------------------------------------------------------------------ 1. host malloc
def configure_host_malloc(mode: str | None = None) -> bool:
    """Applies `mode` (default: $SQUEEZEMOBILE_JAX_HOST_MALLOC or "keep"); True if changed."""
    global _host_malloc_kept
    if mode is None:
        mode = _choice(HOST_MALLOC_ENV, MODES)
    if mode not in MODES:
        raise ValueError(f"{HOST_MALLOC_ENV}={mode!r}: expected one of {MODES}")
    if mode == "default" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # A trim threshold of -1 becomes SIZE_MAX inside glibc: the heap top is never returned.
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    _host_malloc_kept = all(mallopt(param, value) == 1 for param, value in settings)
    return _host_malloc_kept


def host_malloc_notice() -> str | None:
    """The line an entry point logs at start when keep mode is on (None when it is off)."""
    if not _host_malloc_kept:
        return None
    return (
        "host allocator in keep mode: freed memory is kept for reuse (CPU steps about a fifth "
        "faster; resident memory stays at the peak, up to twice glibc's default). "
        f"{HOST_MALLOC_ENV}=default turns it off."
    )


# ------------------------------------------------------------- 2. forward-only options
def largest_matmul_weight(jaxpr) -> int:
    """Elements of the largest right-hand operand of any matmul in `jaxpr` (a
    `jax.extend.core.Jaxpr`) or its sub-jaxprs, batch dimensions excluded: the biggest weight
    matrix of a model."""
    from squeezemobile_jax.models.flops import dot_general_equations

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
    traced program, once per argument signature, from the trace the compilation uses) or
    $SQUEEZEMOBILE_JAX_CPU_INFERENCE_OPTIONS=default; elsewhere with XLA's defaults.
    Usable as `@inference_jit` or `@inference_jit(static_argnums=0)`; the result is called like
    the jitted function and has its `lower` and `trace`. Nothing is looked up at decoration
    time, so decorating at import time does not start JAX's backends.
    """
    if fun is None:
        return functools.partial(inference_jit, **jit_kwargs)
    import jax
    import numpy as np

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
        if _choice(INFERENCE_OPTIONS_ENV, ("tuned", "default")) == "default":
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


# ------------------------------------------------------------------ 3. explicit attention
def use_fused_attention() -> bool:
    """Whether `models.attention` may call `jax.nn.dot_product_attention`: on accelerators,
    and on the CPU only with $SQUEEZEMOBILE_JAX_CPU_ATTENTION=fused."""
    import jax

    if jax.default_backend() != "cpu":
        return True
    return _choice(ATTENTION_ENV, ("explicit", "fused")) == "fused"
