"""Bayesian optimisation: a Gaussian process on standardized `space.features` with a Matérn-5/2 kernel
(length scale and noise chosen by marginal likelihood over a small grid) and expected improvement,
maximized over a candidate pool (uniform samples + mutations of the incumbent).

Static shapes: the GP sees the most recent `window` told architectures; unfilled and failed rows are
masked out of the kernel matrix (identity block), so the matrix is always (window, window).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.scipy.stats import norm

from nasjax.search.base import History, ModelBased, candidate_pool, register
from nasjax.spaces.base import Space


def sq_distances(a: jax.Array, b: jax.Array) -> jax.Array:
    """Squared Euclidean distances: a (N, F), b (M, F) -> (N, M)."""
    return jnp.sum((a[:, None] - b[None]) ** 2, axis=-1)


def matern52(sq: jax.Array, lengthscale: jax.Array) -> jax.Array:
    """Matérn-5/2 kernel, unit signal variance, of squared distances `sq` (any shape)."""
    r = jnp.sqrt(jnp.maximum(sq, 1e-12)) / lengthscale
    return (1.0 + jnp.sqrt(5.0) * r + 5.0 / 3.0 * r ** 2) * jnp.exp(-jnp.sqrt(5.0) * r)


def gp_fit(sq: jax.Array, y: jax.Array, mask: jax.Array, lengthscale: jax.Array, noise: jax.Array):
    """Zero-mean GP on the masked rows of y (N,), with sq (N, N) the inputs' squared distances.

    -> (log marginal likelihood scalar, Cholesky factor (N, N), K^-1 y (N,)).
    """
    both = mask[:, None] & mask[None]
    k = jnp.where(both, matern52(sq, lengthscale), 0.0)
    k = k + jnp.diag(jnp.where(mask, noise + 1e-6, 1.0))
    y = jnp.where(mask, y, 0.0)
    chol = jnp.linalg.cholesky(k)
    alpha = jax.scipy.linalg.cho_solve((chol, True), y)
    # Masked rows form an identity block: they add nothing to y'K^-1 y or log|K|.
    lml = (-0.5 * y @ alpha - jnp.sum(jnp.log(jnp.diag(chol)))
           - 0.5 * jnp.sum(mask) * jnp.log(2 * jnp.pi))
    return lml, chol, alpha


def gp_predict(sq_q: jax.Array, mask: jax.Array, chol: jax.Array, alpha: jax.Array,
               lengthscale: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior of a `gp_fit` at queries with squared distances sq_q (N, M) to its inputs:
    -> (mean (M,), standard deviation (M,))."""
    kq = jnp.where(mask[:, None], matern52(sq_q, lengthscale), 0.0)
    v = jax.scipy.linalg.solve_triangular(chol, kq, lower=True)
    var = jnp.maximum(1.0 - jnp.sum(v ** 2, axis=0), 1e-12)
    return kq.T @ alpha, jnp.sqrt(var)


def expected_improvement(mean: jax.Array, std: jax.Array, best: jax.Array) -> jax.Array:
    """EI of maximization over `best`, elementwise."""
    z = (mean - best) / std
    return std * (z * norm.cdf(z) + norm.pdf(z))


def gp_expected_improvement(space: Space, history: History, pool: jax.Array, window: int,
                            lengthscales: tuple[float, ...], noises: tuple[float, ...]) -> jax.Array:
    """float32 (P,): expected improvement over the best told score of each of pool int32 (P, *enc),
    under the GP fitted to the last `window` told architectures (failed ones masked out). Features are
    standardized by the pool; scores by the window's successful ones; length scales are multiples of
    sqrt(num_features), the typical distance between standardized feature vectors; length scale and
    noise by marginal likelihood over the grid."""
    w = min(window, history.capacity)
    rows = history.count - w + jnp.arange(w)
    mask = (rows >= 0) & jnp.isfinite(history.scores[jnp.maximum(rows, 0)])
    rows = jnp.maximum(rows, 0)
    _, best = history.best()
    feats = jax.vmap(space.features)
    xq, x = feats(pool), feats(history.encodings[rows])
    mu, sd = jnp.mean(xq, axis=0), jnp.std(xq, axis=0)
    sd = jnp.where(sd > 0, sd, 1.0)
    xq, x = (xq - mu) / sd, (x - mu) / sd
    m = jnp.maximum(jnp.sum(mask), 1)
    y = jnp.where(mask, history.scores[rows], 0.0)
    y_mu = jnp.sum(y) / m
    y_sd = jnp.sqrt(jnp.sum(jnp.where(mask, (y - y_mu) ** 2, 0.0)) / m)
    y_sd = jnp.where(y_sd > 0, y_sd, 1.0)
    grid_l, grid_n = jnp.meshgrid(jnp.asarray(lengthscales) * jnp.sqrt(x.shape[1]), jnp.asarray(noises))
    lengthscales, sq = grid_l.ravel(), sq_distances(x, x)
    # Hyperparameters by marginal likelihood; only the chosen GP is queried at the pool.
    lml, chol, alpha = jax.vmap(lambda l, s: gp_fit(sq, (y - y_mu) / y_sd, mask, l, s))(
        lengthscales, grid_n.ravel())
    pick = jnp.argmax(lml)
    mean, std = gp_predict(sq_distances(x, xq), mask, chol[pick], alpha[pick], lengthscales[pick])
    return expected_improvement(mean, std, (best - y_mu) / y_sd)


@register("bo")
@dataclasses.dataclass(frozen=True)
class BayesOpt(ModelBased):
    """GP + EI (`gp_expected_improvement`); the pool's mutations are of the incumbent."""

    window: int = 256
    lengthscales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    noises: tuple[float, ...] = (1e-3, 1e-1)

    def acquisition(self, key: jax.Array, history: History, hparams: dict) -> tuple[jax.Array, jax.Array]:
        incumbent, _ = history.best()
        parents = jnp.broadcast_to(incumbent, (self.n_mutate, *incumbent.shape))
        pool = candidate_pool(self.space, key, parents, self.n_random)
        return pool, gp_expected_improvement(self.space, history, pool, self.window,
                                             self.lengthscales, self.noises)
