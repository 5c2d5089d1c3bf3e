"""Keep-mode host malloc: XLA:CPU's large per-execution buffers stop being faulted in anew."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from squeezemobile_jax.cpu_tuning import configure_host_malloc

# One jitted call holds a 128 MiB temporary (32,768 pages of 4 KiB), like a training step's
# activations. After warm-up keep mode reuses it (now and then the heap grows once more).
_PROBE = """
import resource, sys
from squeezemobile_jax.cpu_tuning import configure_host_malloc
configure_host_malloc(sys.argv[1])
import jax, jax.numpy as jnp
@jax.jit
def step(col, row, v):
    big = jnp.sin(col[:, None] * row[None, :])  # [8192, 4096]
    return (big @ v).sum() + big.T[:7].sum()
col, row, v = jnp.ones((8192,)), jnp.ones((4096,)), jnp.ones((4096, 8))
for _ in range(15):
    step(col, row, v).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step(col, row, v).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_call(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the setting applies to glibc only",
)
def test_keep_mode_reuses_freed_memory():
    pages = 8192 * 4096 * 4 // 4096
    assert _faults_per_call("default") > 0.5 * pages  # glibc maps and unmaps every call
    assert _faults_per_call("keep") < 0.25 * pages  # at most a one-off growth of the heap


def test_unknown_mode_names_the_variable():
    with pytest.raises(ValueError, match="SQUEEZEMOBILE_JAX_HOST_MALLOC='fast'"):
        configure_host_malloc("fast")
