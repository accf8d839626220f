"""Regularized (aging) evolution, Real et al. 2019: tournament selection of a parent among `sample_size`
random population members, one mutation per child, and the oldest member dies when a child joins."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from nasjax.search.base import State, Strategy, draw_without_replacement, register


@struct.dataclass
class EvolutionState(State):
    """population int32 (P, *enc) as a ring buffer of the last P successful
    evaluations; fitness float32 (P,); size int32 (members so far, <= P); head int32 (next slot
    to overwrite: the oldest member once full)."""

    population: jax.Array
    fitness: jax.Array
    size: jax.Array
    head: jax.Array


@register("evolution")
@dataclasses.dataclass(frozen=True)
class RegularizedEvolution(Strategy):
    """Children are random until the population holds `population_size` successfully evaluated
    architectures (failed, NaN-scored ones never join, so they are never parents); afterwards each
    child is a mutation of the best of `sample_size` distinct random members."""

    population_size: int = 100
    sample_size: int = 25
    state_class = EvolutionState

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.sample_size <= self.population_size:
            raise ValueError(f"need 1 <= sample_size <= population_size, got "
                             f"{self.sample_size}, {self.population_size}")

    def _init(self, key: jax.Array) -> tuple[jax.Array, dict]:
        p, shape = self.population_size, self.space.encoding_shape
        return key, dict(population=jnp.zeros((p, *shape), jnp.int32),
                         fitness=jnp.full((p,), -jnp.inf, jnp.float32),
                         size=jnp.zeros((), jnp.int32), head=jnp.zeros((), jnp.int32))

    def ask(self, state: EvolutionState, n: int) -> tuple[jax.Array, EvolutionState]:
        key, k_rand, k_tour, k_mut = jax.random.split(state.key, 4)
        members = jnp.arange(self.population_size) < state.size
        contestants = jax.vmap(lambda k: draw_without_replacement(k, members, self.sample_size))(
            jax.random.split(k_tour, n))  # (n, S)
        winners = jnp.take_along_axis(
            contestants, jnp.argmax(state.fitness[contestants], axis=1)[:, None], axis=1)[:, 0]
        children = jax.vmap(self.space.mutate)(jax.random.split(k_mut, n), state.population[winners])
        warm = state.size < self.population_size
        archs = jnp.where(warm, self.space.sample(k_rand, n), children.astype(jnp.int32))
        return archs, state.replace(key=key)

    def _tell(self, state: EvolutionState, archs: jax.Array, scores: jax.Array) -> EvolutionState:
        p = self.population_size
        ok = jnp.isfinite(scores)
        rank = jnp.cumsum(ok) - 1
        n_ok = jnp.sum(ok)
        # Only the last P successful children of one batch can survive it; distinct slots for them.
        keep = ok & (rank >= n_ok - p)
        slot = jnp.where(keep, (state.head + rank) % p, p)
        return state.replace(
            population=state.population.at[slot].set(archs, mode="drop"),
            fitness=state.fitness.at[slot].set(scores, mode="drop"),
            size=jnp.minimum(state.size + n_ok, p).astype(jnp.int32),
            head=((state.head + n_ok) % p).astype(jnp.int32))
