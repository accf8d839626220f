"""LaNAS with a model-based sampler inside the selected region (the idea of LaNAS's successor
LA-MCTS): the tree and its UCB selection are LaNAS's; instead of taking n uniform members of the
selected leaf's region, an ask draws `n_pool` of them (at most the catalogue's size) the way LaNAS
draws (uniform among the region's members not yet taken, or accepted rejection samples), ranks them
by the expected improvement of `bo.gp_expected_improvement` (the GP of BO, fitted to the history)
and proposes the n best. Candidates outside the region (LaNAS's fallback when the region runs
short) come after the region's, in LaNAS's order; so do candidates already told (rejection mode)
or repeated in the pool. Until the first fit (`n_init` told) the ask is LaNAS's uniform one.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from nasjax.search.base import first_occurrence, match, register
from nasjax.search.bo import BayesOpt, gp_expected_improvement
from nasjax.search.lanas import LaNAS, LaNASState


@register("lanas_bo")
@dataclasses.dataclass(frozen=True)
class LaNASBO(LaNAS):
    """LaNAS (its configuration) + GP/EI ranking of `n_pool` candidates from the selected region;
    the GP's `window`, `lengthscales` and `noises` as BO's."""

    n_pool: int = 256
    window: int = BayesOpt.window
    lengthscales: tuple[float, ...] = BayesOpt.lengthscales
    noises: tuple[float, ...] = BayesOpt.noises

    def __post_init__(self):
        super().__post_init__()
        if self.n_pool < 1:
            raise ValueError(f"n_pool must be >= 1, got {self.n_pool}")

    def ask(self, state: LaNASState, n: int) -> tuple[jax.Array, LaNASState]:
        if n > self.n_pool:
            raise ValueError(f"ask(n={n}) exceeds n_pool={self.n_pool}")
        size = min(self.n_pool, self.space.size()) if self.from_catalogue else self.n_pool
        pool, drawn = super().ask(state, size)  # LaNAS's order: region members first
        h = state.history
        if self.from_catalogue:
            fresh = ~state.taken[jax.vmap(self.space.index)(pool)]
        else:
            fresh = ~match(h.encodings, h.filled, pool)[0] & first_occurrence(pool)
        ei = gp_expected_improvement(self.space, h, pool, self.window, self.lengthscales, self.noises)
        ok = fresh & (self.leaves(drawn, pool) == drawn.selected) & jnp.isfinite(ei)
        fitted = drawn.fitted_at >= 0
        position = jnp.arange(size, dtype=jnp.float32)
        # Sort by (not ok, then -EI among the ok ones once fitted; LaNAS's order otherwise).
        order = jnp.lexsort((jnp.where(ok & fitted, -ei, position), ~ok))
        archs = pool[order[:n]]
        if self.from_catalogue:  # only the proposed members are taken, not the whole pool
            drawn = drawn.replace(taken=state.taken.at[jax.vmap(self.space.index)(archs)].set(True))
        return archs, drawn
