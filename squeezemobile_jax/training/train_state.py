"""The train state: a pytree of step, trainable params, optimizer state and a skip counter."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything that changes during training (all leaves are arrays).

    step:            int32 scalar; number of steps taken (= index of the next batch).
    params:          `nnx.State` of the trainable variables (float32).
    opt_state:       optimizer state for `params`.
    nonfinite_steps: int32 scalar; steps whose update was dropped (non-finite loss/grads).
    """

    step: jax.Array
    params: nnx.State
    opt_state: optax.OptState
    nonfinite_steps: jax.Array

    def replace(self, **changes: Any) -> TrainState:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)


def create_train_state(params: nnx.State, tx: optax.GradientTransformation) -> TrainState:
    """A step-0 state for `params` (call under `jax.jit` to control output shardings)."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        nonfinite_steps=jnp.zeros((), jnp.int32),
    )
