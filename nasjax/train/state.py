"""`TrainState`: one network's weights, batch-norm statistics, optimizer state, step and key."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """One network's training state; `rng` is a raw uint32 (2,) key consumed by every step."""

    params: Any
    batch_stats: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array


def create_state(variables, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
    """TrainState at step 0 from Flax variables {'params': ..., ['batch_stats': ...]}."""
    params = variables["params"]
    return TrainState(params=params, batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params), step=jnp.zeros((), jnp.int32), rng=rng)
