"""Tree-structured Parzen estimator (Bergstra et al. 2011) over the encoding positions: each position is
categorical; l(x) and g(x) are products of per-position smoothed frequencies among the good (top
`gamma` fraction) and the other successful architectures; the next architectures are the candidates
(uniform samples + mutations of good ones) with the highest l(x) / g(x)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from nasjax.search.base import History, ModelBased, candidate_pool, catalogue, enumerable, register
from nasjax.spaces.base import Space


@functools.lru_cache(maxsize=16)
def categories(space: Space) -> np.ndarray:
    """int32 (prod(encoding_shape),): how many values each encoding position takes (counted over the
    catalogue, or over 4096 samples from a fixed key when the space is too large to enumerate)."""
    if enumerable(space, 200_000):
        members = catalogue(space)
    else:
        with jax.ensure_compile_time_eval():
            members = np.asarray(space.sample(jax.random.key(0), 4096))
    flat = members.reshape(len(members), -1)
    return np.asarray([len(np.unique(col)) for col in flat.T], np.int32)


def log_density(x: jax.Array, rows: jax.Array, weight: jax.Array, k: jax.Array, prior: float) -> jax.Array:
    """Log of the product over positions of (count of x's value + prior) / (total + prior * k).

    x int (C, E) candidates, rows int (R, E), weight bool (R,) rows in the model, k (E,) categories.
    """
    counts = jnp.sum((x[:, None] == rows[None]) & weight[None, :, None], axis=1)  # (C, E)
    total = jnp.sum(weight)
    return jnp.sum(jnp.log(counts + prior) - jnp.log(total + prior * k), axis=1)


@register("tpe")
@dataclasses.dataclass(frozen=True)
class TPE(ModelBased):
    """Failed (NaN) architectures are in neither density; the pool's mutations are of good ones."""

    n_random: int = 128
    gamma: float = 0.25
    prior: float = 1.0

    HPARAMS = ("gamma", "prior")

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma must be in (0, 1), got {self.gamma}")

    def acquisition(self, key: jax.Array, history: History, hparams: dict) -> tuple[jax.Array, jax.Array]:
        k_parent, k_pool = jax.random.split(key)
        ranked = history.ranked_scores()
        ok = jnp.isfinite(ranked)
        n_good = jnp.maximum(1, jnp.ceil(hparams["gamma"] * jnp.sum(ok))).astype(jnp.int32)
        rank = jnp.argsort(jnp.argsort(-ranked, stable=True), stable=True)
        good = ok & (rank < n_good)
        parents = jax.random.categorical(k_parent, jnp.where(good, 0.0, -jnp.inf), shape=(self.n_mutate,))
        pool = candidate_pool(self.space, k_pool, history.encodings[parents], self.n_random)
        flat = lambda a: a.reshape(a.shape[0], -1)  # noqa: E731
        k = jnp.asarray(categories(self.space), jnp.float32)
        rows = flat(history.encodings)
        ratio = (log_density(flat(pool), rows, good, k, hparams["prior"])
                 - log_density(flat(pool), rows, ok & ~good, k, hparams["prior"]))
        return pool, ratio
