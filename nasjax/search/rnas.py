"""Randomized NAS (RNAS, `004_*`) in NAO's learned embedding (nasjax/search/nao.py: the model,
training, constrained decoding, fallback and repair are NAO's).

Where NAO follows the predictor's gradient, RNAS samples the region of the embedding where the
predictor expects high performance, by model-reference adaptive search (a cross-entropy method, as
RNAS's reference implementation). With H(x) = the predicted target of unit(x):
  iteration 1: the samples are the parents' embeddings, the reference mean is 0;
  each iteration: the `elite_fraction` of the samples with the highest H (at least one) are the
    elites, weighted w = H e^H; the new mean mu = sum w x / sum w and the diagonal variance
    var = sum w (x - mu_ref)^2 / sum w about the reference mean mu_ref (the previous iteration's
    mean; the reference implementation's update, `region_update`);
  iterations 2..`iterations`: `draws` samples from N(mu, diag var).
The final samples, mu then `n_samples` - 1 draws from N(mu, diag var), are decoded in that order and
the new ones asked (not filtered by the predictor, as the reference).

The reference's 50 iterations with elite fraction 0.05 (`RNAS.PAPER`, with NAO's paper settings)
collapse the distribution: on NAS-Bench-201 its standard deviation fell to 0.0005 on a unit-norm
embedding whose parents spread 0.15, and all 32 final samples decoded to one cell. The default, 5
iterations with elite fraction 0.2, keeps it at 0.10, the region of the best parents.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from nasjax.search.base import register
from nasjax.search.nao import DECODED, PAPER, EmbeddingSearch, unit


@register("rnas")
@dataclasses.dataclass(frozen=True)
class RNAS(EmbeddingSearch):
    """Samples from the embedding region of high predicted performance (see the module docstring):
    `iterations` updates from `draws` samples each, `n_samples` final samples."""

    iterations: int = 5
    draws: int = 100
    elite_fraction: float = 0.2
    n_samples: int = 300
    PAPER: ClassVar[dict] = dict(PAPER, iterations=50, elite_fraction=0.05)

    def __post_init__(self):
        super().__post_init__()
        if min(self.iterations, self.draws, self.n_samples) < 1 or not 0 < self.elite_fraction <= 1:
            raise ValueError(f"need iterations, draws, n_samples >= 1 and elite_fraction in (0, 1]; got "
                             f"{self.iterations}, {self.draws}, {self.n_samples}, {self.elite_fraction}")

    def region_update(self, params, x: jax.Array, reference: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One update of the sampling distribution from samples x float32 (N, hidden) and the
        reference mean (hidden,) -> (mean (hidden,), diagonal variance (hidden,))."""
        h = jax.vmap(lambda xi: self.predict(params, unit(xi)))(x)
        h, top = jax.lax.top_k(h, max(1, math.ceil(self.elite_fraction * x.shape[0])))
        w = (h * jnp.exp(h))[:, None]
        elites = x[top]
        mean = jnp.sum(w * elites, axis=0) / jnp.sum(w)
        return mean, jnp.sum(w * (elites - reference) ** 2, axis=0) / jnp.sum(w)

    @staticmethod
    def draw(key: jax.Array, mean: jax.Array, var: jax.Array, m: int) -> jax.Array:
        """m samples float32 (m, hidden) from N(mean, diag var)."""
        return mean + jnp.sqrt(var) * jax.random.normal(key, (m, mean.shape[0]))

    def region(self, key: jax.Array, params, parent_z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The final sampling distribution after `iterations` updates -> (mean, variance) (hidden,)."""
        mean, var = self.region_update(params, parent_z, jnp.zeros_like(parent_z[0]))

        def iteration(carry, k):
            mean, var = carry
            return self.region_update(params, self.draw(k, mean, var, self.draws), mean), None

        return jax.lax.scan(iteration, (mean, var), jax.random.split(key, self.iterations - 1))[0]

    def search_embedding(self, key, params, parent_archs, parent_z, history, proposal):
        k_region, k_draw, k_repair = jax.random.split(key, 3)
        mean, var = self.region(k_region, params, parent_z)
        z = unit(jnp.concatenate([mean[None], self.draw(k_draw, mean, var, self.n_samples - 1)]))
        nearest = jnp.argmax(z @ parent_z.T, axis=1)  # a repair falls back to mutating this parent
        archs = self.decode_all(k_repair, params, z, parent_archs[nearest])
        idx = jnp.full((self.n_samples,), -1, jnp.int32)
        return proposal.add(archs, proposal.new(history, archs), DECODED, z, idx, jnp.zeros_like(idx))
