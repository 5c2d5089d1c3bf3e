"""How the process's C allocator treats large freed blocks (matters for XLA:CPU runs).

XLA:CPU allocates each execution's temporary buffer (every activation of a training step:
about 1.5 GB for SqueezeBERT at batch 8 x length 128) and its outputs with `posix_memalign`.
glibc serves blocks that large with a fresh `mmap` and unmaps them on free, so every step
page-faults in and zeroes its whole working set again: about a fifth of a CPU training step
on a 2-core machine. In "keep" mode glibc keeps freed memory for reuse instead: one malloc
arena (worker threads allocate from the main heap rather than from private mmap'd heaps, whose
large blocks always go to `mmap`), no `mmap` for large blocks, no trimming of the heap top.
Resident memory then stays at the run's peak, as with tcmalloc or jemalloc, and that peak is
higher than under glibc's default: freed blocks get split by smaller requests and a step can
start before the last one's buffer is released, so the heap grows by a temporary buffer now
and then until it holds a few of them. Batch-8 training steps measured 4.0 GB with the
default and 8.0 GB in keep mode for BERT-base, 2.9 GB and 2.8-5.8 GB for SqueezeBERT (the
growth stopped within 40 steps in a 200-step run).

The mode comes from `SQUEEZEMOBILE_JAX_HOST_MALLOC` ("keep", the default, or "default" for
glibc's own behaviour). It must be set before JAX starts its CPU worker threads, so the
entry points call `configure_host_malloc()` before importing anything else. Other C
libraries (musl, macOS) are left alone, as is accelerator memory.
"""

from __future__ import annotations

import ctypes
import os
import platform

ENV_VAR = "SQUEEZEMOBILE_JAX_HOST_MALLOC"
MODES = ("keep", "default")

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def configure_host_malloc(mode: str | None = None) -> bool:
    """Applies `mode` (default: $SQUEEZEMOBILE_JAX_HOST_MALLOC or "keep"); True if changed."""
    mode = mode or os.environ.get(ENV_VAR) or "keep"
    if mode not in MODES:
        raise ValueError(f"{ENV_VAR}={mode!r}: expected one of {MODES}")
    if mode == "default" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # A trim threshold of -1 becomes SIZE_MAX inside glibc: the heap top is never returned.
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    return all(mallopt(param, value) == 1 for param, value in settings)
