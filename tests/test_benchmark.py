"""scripts/benchmark.py end to end on a tiny model: bfloat16 compute, the attention-dropout
override, and the MFU, fused-attention, CPU-cores and matmuls-alone rows; and the program
behind the last (`matmuls_alone`)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import jax
import jax.numpy as jnp
import pytest

from squeezemobile_jax.cpu_tuning import HOST_MALLOC_ENV
from squeezemobile_jax.models import get_model_config
from squeezemobile_jax.models.flops import training_flops_per_example

REPO = Path(__file__).resolve().parents[1]


def test_bfloat16_run_of_ours_writes_its_rows(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    batch, length, predictions = 2, 32, 4
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "benchmark.py"),
        "--models=squeezebert-test",
        "--inference-batches=",  # the training step only, to keep the test short
        f"--batch={batch}",
        f"--length={length}",
        f"--predictions={predictions}",
        "--repeats=1",
        "--warmup=1",
        "--dtype=bfloat16",
        "--attention-dropout=0",
        f"--output={out}",
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    text = out.read_text()
    assert "measured bfloat16 matmul peak" in text and "Ours computes in bfloat16" in text
    assert "dropout on (attention dropout 0.0)" in text
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[0] == "squeezebert-test":
            rows[cells[1].removesuffix(", scanned layers")] = cells[2:]
    # bfloat16 measures ours only: every peer column is empty.
    assert all(r[1:4] == ["-", "-", "-"] for r in rows.values()), rows

    def number(cell: str) -> float:
        return float(cell.split()[0].replace(",", ""))

    assert not any(metric.startswith("inference") for metric in rows)
    # The bound row is there, with a throughput (what its program runs is checked below;
    # comparing two timings of one run would make this a timed test).
    assert number(rows["train step throughput, matmuls alone (bound)"][0]) > 0
    assert rows["train step fused attention calls"][0] == "0 calls"  # no cuDNN on a CPU
    # Process CPU time over wall time: some of a core (other tests may share the cores), at
    # most every core of the machine.
    busy = number(rows["train step CPU cores busy"][0])
    assert 0.1 <= busy <= 1.1 * os.cpu_count(), busy
    # MFU = model FLOPs of the step / step time / the measured peak, from the figures shown.
    peak = float(re.search(r"matmul peak ([\d.]+) GFLOP/s", text).group(1)) * 1e9
    step_seconds = batch * length / number(rows["train step throughput"][0])
    flops = batch * training_flops_per_example(
        get_model_config("squeezebert-test"), length, predictions
    )
    mfu = number(rows["train step MFU"][0])
    assert abs(mfu - 100 * flops / step_seconds / peak) <= 0.01 * mfu


@pytest.fixture(scope="module")
def benchmark_script():
    """scripts/benchmark.py as a module, imported without switching this process's allocator
    to keep mode (it configures the allocator on import)."""
    spec = importlib.util.spec_from_file_location("benchmark", REPO / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark"] = module  # its dataclasses look their module up
    with mock.patch.dict(os.environ, {HOST_MALLOC_ENV: "default"}):
        spec.loader.exec_module(module)
    return module


def test_matmuls_alone_computes_every_product_in_full(benchmark_script):
    """A 3-step scan with two matmuls per step (one repeated exactly) and one matmul outside:
    the compiled program of the matmuls alone has all 7 products, at their full shapes."""

    @jax.jit
    def program(x, w, stacked):  # x: [4, 8], w: [8, 16], stacked: [3, 16, 16]
        def body(h, layer):
            return jnp.tanh(h @ layer) + h @ layer, None

        return jax.lax.scan(body, x @ w, stacked)[0]

    args = (jnp.ones((4, 8)), jnp.ones((8, 16)), jnp.ones((3, 16, 16)))
    compiled = []

    def jit(fn):
        jitted = jax.jit(fn)

        def run(operands):
            compiled.append(jitted.lower(operands).compile().as_text())
            return jitted(operands)

        return run

    benchmark_script.matmuls_alone(program, args, jit)()
    products = re.findall(r"= f32\[([\d,]*)\]\{[\d,]*\} (?:dot|fusion)\(", compiled[0])
    dots = re.findall(r"= f32\[([\d,]*)\]\{[\d,]*\} dot\(", compiled[0])
    assert sorted(dots) == ["4,16"] * 7, (dots, products)
