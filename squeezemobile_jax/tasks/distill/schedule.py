"""The distillation plan: stages, phases, per-layer learning-rate scales and loss gates.

A run has up to two stages over one global step counter:

  stage 1  layer-wise knowledge transfer, steps [0, S1)
  stage 2  pretraining distillation,      steps [S1, S1 + S2)

Strategies (the paper's comparison):

  progressive  stage 1 is L phases of `steps_per_layer` steps; phase l (1-based) transfers
               layer l only (its loss gate is the only one on, shifted by one step as the
               original's: see `layer_gates`).
  joint        stage 1 is one phase of `joint_steps` steps with every layer's losses at once.
  auxiliary    no stage 1; stage 2 adds every layer's transfer losses to its own loss.

Stage-1 learning-rate scale of the stacked layer parameters (the original LAMB's layer-wise
warmup), with t the step within the phase and n the phase length::

    background(t, n) = min(10 t / n, 0.9 + 0.1 sqrt(1 - t / n))
    scale(layer)     = m * background * (1 in the phase, r before it, 0 after it)

where m = `layer_lr_multiplier` (3), r = `earlier_layer_ratio` (0.1, so earlier layers
train at 0.3x) or 0 with `freeze_earlier_layers`. In the joint strategy every layer is in
the one phase. Every other student parameter (embeddings, heads) has scale 0 in stage 1:
it stays bitwise fixed. Stage 2 trains everything at scale 1.

Stage 2's optimizer restarts at S1 (`restart_at`): fresh moments and a warmup + decay
schedule counted from S1, as the original starts pretraining distillation as a new run from
the stage-1 checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

STRATEGIES = ("progressive", "joint", "auxiliary")
LAYER_PREFIX = "backbone/layers/"  # stacked block parameters of the student: [L, ...]


@dataclasses.dataclass(frozen=True)
class DistillPlan:
    """How many steps each stage and phase takes, and the stage-1 scale factors."""

    strategy: str
    num_layers: int
    stage1_steps: int
    stage2_steps: int
    steps_per_layer: int = 0  # progressive only
    layer_lr_multiplier: float = 3.0
    earlier_layer_ratio: float = 0.1  # 0.0 = strict freezing of earlier layers

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"distill.strategy={self.strategy!r}; use one of {STRATEGIES}")
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be positive, got {self.num_layers}")
        if self.stage1_steps < 0 or self.stage2_steps < 0:
            raise ValueError("stage lengths must not be negative")
        if self.total_steps < 1:
            raise ValueError("the run has no step: give stage 1 or stage 2 some steps")
        if self.strategy == "progressive" and self.steps_per_layer < 1:
            raise ValueError("distill.stage1.steps_per_layer must be positive (progressive)")
        if self.strategy == "auxiliary" and self.stage1_steps:
            raise ValueError("the auxiliary strategy has no stage 1")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], num_layers: int) -> DistillPlan:
        """From `config.distill` (strategy, stage1.{steps_per_layer, joint_steps,
        layer_lr_multiplier, earlier_layer_ratio, freeze_earlier_layers}, stage2.num_steps)."""
        strategy = cfg["strategy"]
        s1 = cfg["stage1"]
        spl = int(s1["steps_per_layer"])
        stage1 = {
            "progressive": num_layers * spl,
            "joint": int(s1["joint_steps"]),
            "auxiliary": 0,
        }.get(strategy, 0)
        return cls(
            strategy=strategy,
            num_layers=num_layers,
            stage1_steps=stage1,
            stage2_steps=int(cfg["stage2"]["num_steps"]),
            steps_per_layer=spl if strategy == "progressive" else 0,
            layer_lr_multiplier=float(s1["layer_lr_multiplier"]),
            earlier_layer_ratio=0.0
            if s1["freeze_earlier_layers"]
            else float(s1["earlier_layer_ratio"]),
        )

    @property
    def total_steps(self) -> int:
        return self.stage1_steps + self.stage2_steps

    @property
    def phase_length(self) -> int:
        """Steps per stage-1 phase (the n of `background`)."""
        return self.steps_per_layer if self.strategy == "progressive" else self.stage1_steps

    def stage(self, step: int) -> int:
        """Stage (1 or 2) that step `step` (0-based) belongs to."""
        return 1 if step < self.stage1_steps else 2

    def phase(self, step: int) -> int:
        """Layer (1-based) transferred at `step` in progressive stage 1, else 0 (all layers)."""
        if self.strategy != "progressive" or step >= self.stage1_steps:
            return 0
        return step // self.steps_per_layer + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self, steps_done: int) -> dict[str, Any]:
        """Checkpoint metadata after `steps_done` steps: stage and phase of the last step."""
        last = max(steps_done - 1, 0)
        return {
            "step": int(steps_done),
            "stage": self.stage(last),
            "phase": self.phase(last),
            "plan": self.to_dict(),
        }


def background(t: jax.Array, n: int) -> jax.Array:
    """The original per-phase warmup: min(10 t / n, 0.9 + 0.1 sqrt(1 - t / n)), t in [0, n)."""
    frac = jnp.asarray(t, jnp.float32) / float(n)
    return jnp.minimum(10.0 * frac, 0.9 + 0.1 * jnp.sqrt(jnp.maximum(1.0 - frac, 0.0)))


def _phase_index(step: jax.Array, plan: DistillPlan) -> jax.Array:
    """0-based layer of the current stage-1 phase (progressive); int32 scalar."""
    phase = jnp.asarray(step, jnp.int32) // plan.steps_per_layer
    return jnp.clip(phase, 0, plan.num_layers - 1)


def layer_lr_scales(step: jax.Array, plan: DistillPlan) -> jax.Array:
    """Stage-1 learning-rate scale of each layer at `step`: float32 [L]."""
    layers = jnp.arange(plan.num_layers)
    n = plan.phase_length
    t = jnp.asarray(step, jnp.int32) % n
    top = plan.layer_lr_multiplier * background(t, n)
    if plan.strategy != "progressive":
        return jnp.full((plan.num_layers,), top, jnp.float32)
    phase = _phase_index(step, plan)
    ratio = plan.earlier_layer_ratio
    return jnp.where(layers == phase, top, jnp.where(layers < phase, ratio * top, 0.0))


def layer_gates(step: jax.Array, plan: DistillPlan) -> jax.Array:
    """Which layers' transfer losses count at `step`: float32 [L] of 0/1.

    Progressive: layer l (0-based) counts for steps in (spp * l, spp * (l + 1)], as the
    original `distill_util` gates it, so no layer counts at step 0 and each phase's first
    step still counts the layer before. Parameters are unaffected: at those steps every
    layer's learning-rate scale is 0 (`background(0, n) = 0`); only logged losses move.
    """
    if plan.strategy != "progressive":
        return jnp.ones((plan.num_layers,), jnp.float32)
    gated = (jnp.asarray(step, jnp.int32) - 1) // plan.steps_per_layer  # -1 at step 0
    return (jnp.arange(plan.num_layers) == gated).astype(jnp.float32)


def stage1_scale_fn(plan: DistillPlan) -> Callable[[jax.Array, str], jax.Array]:
    """(step, parameter path) -> lr scale for `per_path_lr_scales`: [L] for the student's
    stacked layers, 0 for every other parameter (embeddings, pooler, heads)."""

    def scale(step: jax.Array, path: str) -> jax.Array:
        if path.startswith(LAYER_PREFIX):
            return layer_lr_scales(step, plan)
        return jnp.zeros((), jnp.float32)

    return scale


def restart_at(
    tx: optax.GradientTransformation, start_step: int
) -> optax.GradientTransformationExtraArgs:
    """`tx` as if training began at `start_step`: it sees ``step - start_step`` and its state
    is reset to ``tx.init(params)`` at that step (a pure function of the step, so a run
    resumed at any step does the same)."""
    inner = optax.with_extra_args_support(tx)

    def update_fn(updates, state, params=None, *, step=None, **extra):
        if step is None:
            raise ValueError("restart_at needs the training step: tx.update(..., step=step)")
        local = jnp.asarray(step, jnp.int32) - start_step
        fresh = inner.init(params)
        state = jax.tree.map(lambda f, s: jnp.where(local == 0, f, s), fresh, state)
        return inner.update(updates, state, params, step=local, **extra)

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)
