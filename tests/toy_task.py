"""A tiny self-contained task for tests and smoke runs of the loop (no BERT involved).

`ToyMLP` (Linear -> LayerNorm -> tanh -> Linear, with biases) regresses a fixed random
target ``y = sin(x @ w_true)`` on Gaussian inputs. `toy_batches` yields each process's rows
of a deterministic global batch per step (a pure function of (seed, step)), so runs on any
number of devices and processes see identical data.

Run it from the repository root: ``python tests/toy_task.py --workdir /tmp/toy --steps 50``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from squeezemobile_jax.training import loop
from squeezemobile_jax.training.config import training_defaults
from squeezemobile_jax.training.mesh import maybe_initialize_distributed, to_host


class ToyMLP(nnx.Module):
    """``[B, d_in] -> [B, d_out]``: Linear -> LayerNorm -> tanh -> dropout -> Linear.

    Dropout is active only when a key is passed (``model(x, rng)``); the module also keeps
    its own RNG state, as models with dropout do, which the loop holds fixed.
    """

    def __init__(
        self,
        d_in: int = 8,
        hidden: int = 16,
        d_out: int = 4,
        dropout: float = 0.0,
        *,
        rngs: nnx.Rngs,
    ):
        self.dense1 = nnx.Linear(d_in, hidden, rngs=rngs)
        self.norm = nnx.LayerNorm(hidden, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.dense2 = nnx.Linear(hidden, d_out, rngs=rngs)

    def __call__(self, x: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        h = jnp.tanh(self.norm(self.dense1(x)))
        if rng is not None:
            h = self.dropout(h, rngs=rng)
        return self.dense2(h)


def toy_loss(model: ToyMLP, batch: dict[str, jax.Array], rng: jax.Array | None):
    """Mean squared error (dropout from `rng`); aux reports the mean absolute error."""
    err = model(batch["x"], rng) - batch["y"]
    return jnp.mean(jnp.square(err)), {"mae": jnp.mean(jnp.abs(err))}


def toy_global_batch(
    step: int, batch_size: int, d_in: int = 8, d_out: int = 4, seed: int = 0
) -> dict[str, np.ndarray]:
    """The whole global batch of `step`: ``x [B, d_in]``, ``y [B, d_out]`` (float32)."""
    w_true = np.random.default_rng(seed + 1_000_003).normal(size=(d_in, d_out))
    x = np.random.default_rng((seed, step)).normal(size=(batch_size, d_in))
    return {"x": x.astype(np.float32), "y": np.sin(x @ w_true).astype(np.float32)}


def toy_batches(
    batch_size: int, *, seed: int = 0, nan_at_step: int | None = None, sleep: float = 0.0
):
    """``batches(start_step)`` for the loop: this process's rows of each global batch."""
    n_proc, i_proc = jax.process_count(), jax.process_index()
    rows = batch_size // n_proc

    def batches(start: int) -> Iterator[dict[str, np.ndarray]]:
        step = start
        while True:
            full = toy_global_batch(step, batch_size, seed=seed)
            if nan_at_step is not None and step == nan_at_step:
                full["x"][0, 0] = np.nan
            if sleep:
                time.sleep(sleep)
            yield {k: v[i_proc * rows : (i_proc + 1) * rows] for k, v in full.items()}
            step += 1

    return batches


def toy_config(steps: int = 20) -> ml_collections.ConfigDict:
    """Training defaults shrunk for the toy task (LAMB, warmup 2, log every step)."""
    c = training_defaults()
    c.train.num_steps = steps
    c.train.log_every = 1
    c.checkpoint.every_steps = 5
    c.optimizer.learning_rate = 1e-2
    c.optimizer.schedule.warmup_steps = 2
    return c


def main(argv: list[str] | None = None) -> None:
    """CLI used by the multi-device / multi-process / resume tests."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workdir", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--ckpt_every", type=int, default=5)
    p.add_argument("--fsdp", action="store_true")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--nan_at", type=int, default=None)
    p.add_argument("--nonfinite", default="stop")
    p.add_argument("--coordinator", default=None)
    p.add_argument("--num_processes", type=int, default=None)
    p.add_argument("--process_id", type=int, default=None)
    p.add_argument("--save_params", default=None, help="write final params here (.npz)")
    args = p.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("squeezemobile_jax").setLevel(logging.INFO)

    config = toy_config(args.steps)
    config.train.grad_accum_steps = args.accum
    config.train.nonfinite = args.nonfinite
    config.checkpoint.every_steps = args.ckpt_every
    config.mesh.fsdp = args.fsdp
    config.mesh.fsdp_min_size_mb = 0.0
    if args.coordinator:
        config.distributed.initialize = True
        config.distributed.coordinator_address = args.coordinator
        config.distributed.num_processes = args.num_processes
        config.distributed.process_id = args.process_id
    maybe_initialize_distributed(config)

    model = ToyMLP(dropout=args.dropout, rngs=nnx.Rngs(0))
    task = loop.Task(loss_fn=toy_loss)
    batches = toy_batches(args.batch, nan_at_step=args.nan_at, sleep=args.sleep)
    result = loop.train_and_evaluate(config, args.workdir, task, model, batches)
    if args.save_params:
        from squeezemobile_jax.training.paths import path_to_str

        flat = jax.tree_util.tree_leaves_with_path(result.state.params)
        arrays = {path_to_str(kp): to_host(x) for kp, x in flat}
        if jax.process_index() == 0:
            np.savez(args.save_params, **arrays)
    print(f"DONE step={result.step} preempted={result.preempted}", flush=True)


if __name__ == "__main__":
    main()
