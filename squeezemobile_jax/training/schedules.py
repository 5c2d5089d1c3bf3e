"""Learning-rate schedules: pure functions of the (0-based) step, usable with jnp or NumPy.

The default `warmup_poly_decay` is BERT's ``create_optimizer`` schedule: a polynomial decay
from `peak` to `end_value` measured from step 0 over `decay_steps`, overridden by a linear
warmup ``peak * step / warmup_steps`` while ``step < warmup_steps`` (so the very first update
uses lr 0 when there is a warmup). ``decay_from='warmup_end'`` instead starts the decay when
the warmup ends (the optax / HF convention).

Config (``config.optimizer.schedule``), read by `schedule_from_config`:
  name:          'warmup_poly' | 'warmup_linear' | 'warmup_constant' | 'constant'
  warmup_steps:  int, default 0
  decay_steps:   int, 0 -> the run's total number of steps
  end_ratio:     end value as a fraction of the peak lr (BERT 0.0, MobileBERT 1e-4)
  power:         polynomial power (1.0 = linear)
  decay_from:    'start' (BERT) | 'warmup_end'
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import ml_collections

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


def warmup_poly_decay(
    step: jnp.ndarray,
    *,
    peak: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    power: float = 1.0,
    decay_from: str = "start",
) -> jnp.ndarray:
    """Learning rate at `step` (scalar, float32): linear warmup, then polynomial decay."""
    step = jnp.asarray(step, jnp.float32)
    start = 0.0 if decay_from == "start" else float(warmup_steps)
    span = max(float(decay_steps) - start, 1.0)
    frac = jnp.clip((step - start) / span, 0.0, 1.0)
    decayed = (peak - end_value) * (1.0 - frac) ** power + end_value
    if warmup_steps <= 0:
        return decayed
    warm = peak * step / float(warmup_steps)
    return jnp.where(step < warmup_steps, warm, decayed)


def warmup_constant(step: jnp.ndarray, *, peak: float, warmup_steps: int) -> jnp.ndarray:
    """Linear warmup to `peak`, then constant."""
    step = jnp.asarray(step, jnp.float32)
    if warmup_steps <= 0:
        return jnp.full_like(step, peak)
    return jnp.where(step < warmup_steps, peak * step / float(warmup_steps), peak)


def constant(step: jnp.ndarray, *, peak: float) -> jnp.ndarray:
    """Constant learning rate."""
    return jnp.full_like(jnp.asarray(step, jnp.float32), peak)


def schedule_from_config(cfg: ml_collections.ConfigDict, peak: float, total_steps: int) -> Schedule:
    """Builds a schedule ``step -> lr`` from ``config.optimizer.schedule`` (see module doc)."""
    name = cfg.get("name", "warmup_poly")
    warmup = int(cfg.get("warmup_steps", 0) or 0)
    if name == "constant":
        return lambda step: constant(step, peak=peak)
    if name == "warmup_constant":
        return lambda step: warmup_constant(step, peak=peak, warmup_steps=warmup)
    if name in ("warmup_poly", "warmup_linear"):
        decay_steps = int(cfg.get("decay_steps", 0) or 0) or int(total_steps)
        power = 1.0 if name == "warmup_linear" else float(cfg.get("power", 1.0))
        end_value = peak * float(cfg.get("end_ratio", 0.0))
        decay_from = cfg.get("decay_from", "start")
        if decay_from not in ("start", "warmup_end"):
            raise ValueError(
                f"optimizer.schedule.decay_from={decay_from!r}; use 'start' or 'warmup_end'."
            )
        return lambda step: warmup_poly_decay(
            step,
            peak=peak,
            warmup_steps=warmup,
            decay_steps=decay_steps,
            end_value=end_value,
            power=power,
            decay_from=decay_from,
        )
    raise ValueError(
        f"optimizer.schedule.name={name!r} is unknown; use one of "
        "'warmup_poly', 'warmup_linear', 'warmup_constant', 'constant'."
    )
