"""Landscape of a tabular benchmark under a space's neighbourhood (`003_*`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nasjax.spaces.base import Space


def local_optima(space: Space, scores: jax.Array, batch_size: int = 4096) -> jax.Array:
    """Which members are local optima: bool (size,), aligned with `space.enumerate()`.

    A member is a local optimum when its score is finite and no (real) neighbour under
    `space.neighbors` has a strictly higher score; NaN neighbours are ignored. `scores` is float
    (size,), e.g. a benchmark's `scores_mean` or one seed's column.
    """
    members = jnp.asarray(space.enumerate())
    scores = jnp.asarray(scores, jnp.float32)
    if scores.shape != (members.shape[0],):
        raise ValueError(f"scores have shape {scores.shape}, expected ({members.shape[0]},) aligned "
                         f"with {type(space).__name__}.enumerate()")

    return _local_optima(space, members, scores, batch_size)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _local_optima(space: Space, members: jax.Array, scores: jax.Array, batch_size: int) -> jax.Array:
    """`local_optima` as one program per space (scores are an argument, so new scores reuse it)."""
    def one(enc):
        nbrs, mask = space.neighbors(enc)
        # Masked-out rows may be invalid encodings; their (clamped) index is never read unmasked.
        nbr_scores = scores[jax.vmap(space.index)(nbrs)]
        own = scores[space.index(enc)]
        return jnp.isfinite(own) & ~jnp.any(mask & (nbr_scores > own))

    return jax.lax.map(one, members, batch_size=batch_size)


def count_local_optima(space: Space, scores: jax.Array) -> int:
    """Number of local optima of `scores` (aligned with `space.enumerate()`) under `space.neighbors`."""
    return int(np.sum(np.asarray(local_optima(space, scores))))
