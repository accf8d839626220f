"""Randomized NAS (RNAS, `004_*`) in NAO's learned embedding (nasjax/search/nao.py: the model,
training, constrained decoding and repair are NAO's).

Where NAO follows the predictor's gradient, RNAS samples: each of `n_samples` embeddings is a random
convex combination of the top `n_parents` told architectures' embeddings (Dirichlet(`concentration`)
weights: a point inside the region they bound), plus isotropic Gaussian noise of RMS norm `noise`
times the parents' embedding spread (so the samples also reach just outside it). The samples are
decoded; the valid, new ones are ranked by the predictor at their own embedding and the best asked.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from nasjax.search.base import register
from nasjax.search.nao import EmbeddingSearch, spread


@register("rnas")
@dataclasses.dataclass(frozen=True)
class RNAS(EmbeddingSearch):
    """Random points in (and around) the region the best architectures' embeddings bound."""

    n_samples: int = 64
    concentration: float = 1.0
    noise: float = 0.25
    HPARAMS = EmbeddingSearch.HPARAMS + ("concentration", "noise")

    def __post_init__(self):
        super().__post_init__()
        if self.n_samples < 1 or self.concentration <= 0 or self.noise < 0:
            raise ValueError(f"need n_samples >= 1, concentration > 0, noise >= 0; got {self.n_samples}, "
                             f"{self.concentration}, {self.noise}")

    def embeddings(self, key: jax.Array, params, parents: jax.Array, hparams: dict) -> tuple[jax.Array, jax.Array]:
        k_mix, k_noise = jax.random.split(key)
        p, h = parents.shape
        weights = jax.random.dirichlet(k_mix, jnp.full((p,), hparams["concentration"]), (self.n_samples,))
        noise = jax.random.normal(k_noise, (self.n_samples, h)) * (hparams["noise"] * spread(parents) / jnp.sqrt(h))
        return weights @ parents + noise, jnp.argmax(weights, axis=1).astype(jnp.int32)
