"""Random search: uniform over the space, without replacement where the space is small enough to
enumerate (a boolean mask over `catalogue(space)` in the state), with replacement otherwise."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from nasjax.search.base import State, Strategy, catalogue, draw_without_replacement, enumerable, register


@struct.dataclass
class RandomState(State):
    """taken bool (size,): catalogue members already asked (pending or told), or
    shape (0,) when sampling with replacement."""

    taken: jax.Array


@register("random")
@dataclasses.dataclass(frozen=True)
class RandomSearch(Strategy):
    """Uniform random search. Enumerable spaces of at most `max_catalogue` members are drawn without
    replacement (never re-asking a pending or told member until all have been asked)."""

    max_catalogue: int = 200_000
    state_class = RandomState

    @property
    def without_replacement(self) -> bool:
        return enumerable(self.space, self.max_catalogue)

    def _init(self, key: jax.Array) -> tuple[jax.Array, dict]:
        size = self.space.size() if self.without_replacement else 0
        return key, dict(taken=jnp.zeros((size,), bool))

    def ask(self, state: RandomState, n: int) -> tuple[jax.Array, RandomState]:
        key, sub = jax.random.split(state.key)
        if not self.without_replacement:
            return self.space.sample(sub, n), state.replace(key=key)
        if n > state.taken.shape[0]:
            raise ValueError(f"ask(n={n}) exceeds the space's {state.taken.shape[0]} members")
        # Once every member has been asked the draws continue uniformly over all of them.
        idx = draw_without_replacement(sub, ~state.taken, n)
        archs = jnp.asarray(catalogue(self.space))[idx]
        return archs, state.replace(key=key, taken=state.taken.at[idx].set(True))
