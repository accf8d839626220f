"""Random search with early stopping: Hyperband (Li et al. 2018) and successive halving (`000_*`).

A bracket s starts n_0 = ceil((s_max + 1) / (s + 1) * eta^s) random architectures at budget
r_0 = max_budget / eta^s; each rung keeps the best 1/eta at eta times the budget, up to
`max_budget`. Hyperband cycles over the brackets s = s_max..0; successive halving repeats s_max only.

Budget protocol: `ask_with_budget(state, n) -> (archs, budgets float32 (n,), state)`; plain `ask`
returns the same architectures; new brackets start at architectures not evaluated before (where
the space allows, see `sample_unseen`). The state knows each pending architecture's budget, so
`tell` takes only (archs, scores). `state.budgets` (capacity,) holds the budget of every history row.

`halving_rungs` / `halving_cost` plan successive halving over a fixed set of candidates for a caller
that trains them itself (e.g. continuing each survivor's training, `nasjax.experiment.halving`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from nasjax.search.base import History, State, Strategy, WorkQueue, register, sample_unseen


def halving_rungs(candidates: int, eta: int, min_budget: int, max_budget: int) -> list[tuple[int, int]]:
    """Successive halving over `candidates` architectures: (architectures, budget) per rung, the
    budget min_budget x eta^i and the last rung's max_budget; ceil(n / eta) survive each rung."""
    if candidates < 1 or eta < 2 or not 1 <= min_budget <= max_budget:
        raise ValueError(f"need candidates >= 1, eta >= 2 and 1 <= min_budget <= max_budget, got "
                         f"{candidates}, {eta}, {min_budget}, {max_budget}")
    out, n, budget = [], candidates, min_budget
    while budget < max_budget and n > 1:
        out.append((n, budget))
        n, budget = -(-n // eta), min(budget * eta, max_budget)
    return out + [(n, max_budget)]


def halving_cost(rungs: list[tuple[int, int]]) -> int:
    """Budget (architecture x budget units) successive halving spends on `rungs` when each survivor
    continues from its previous rung's budget."""
    done, total = 0, 0
    for n, budget in rungs:
        total += n * (budget - done)
        done = budget
    return total


@struct.dataclass
class HyperbandState(State):
    """budgets float32 (capacity,) of the history rows; stage int32 (index into the static rung
    schedule); queue: the current rung's architectures."""

    budgets: jax.Array
    stage: jax.Array
    queue: WorkQueue


@register("hyperband")
@dataclasses.dataclass(frozen=True)
class Hyperband(Strategy):
    """Budgets are in the objective's unit (epochs). `brackets` = how many of the most aggressive
    brackets to cycle (None: all s_max + 1, i.e. Hyperband; 1: successive halving).

    When more architectures are asked than the current rung still has unasked (the rest are being
    evaluated), the extra slots get random architectures at `min_budget`.
    """

    min_budget: float = 1.0
    max_budget: float = 27.0
    eta: int = 3
    brackets: int | None = None
    state_class = HyperbandState

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.min_budget <= self.max_budget:
            raise ValueError(f"need 0 < min_budget <= max_budget, got {self.min_budget}, "
                             f"{self.max_budget}")
        if self.eta < 2:
            raise ValueError(f"eta must be >= 2, got {self.eta}")
        if self.brackets is not None and not 1 <= self.brackets <= self.s_max + 1:
            raise ValueError(f"brackets must be in [1, {self.s_max + 1}], got {self.brackets}")

    @property
    def s_max(self) -> int:
        return int(math.floor(math.log(self.max_budget / self.min_budget) / math.log(self.eta) + 1e-9))

    def schedule(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rungs in order: (size int32 (R,), budget float32 (R,), first bool (R,): starts a bracket)."""
        sizes, budgets, first = [], [], []
        top = self.s_max + 1
        for s in range(self.s_max, self.s_max - (self.brackets or top), -1):
            n0 = math.ceil(top / (s + 1) * self.eta ** s)
            for i in range(s + 1):
                sizes.append(n0 // self.eta ** i)
                budgets.append(self.max_budget / self.eta ** (s - i))
                first.append(i == 0)
        return np.asarray(sizes, np.int32), np.asarray(budgets, np.float32), np.asarray(first)

    def _rung(self, key: jax.Array, stage: jax.Array, previous: WorkQueue,
              history: History) -> WorkQueue:
        """The rung at `stage`: random architectures not evaluated before (where possible), or the
        best of the previous rung."""
        sizes, _, first = (jnp.asarray(a) for a in self.schedule())
        q = previous.real.shape[0]
        ranked = previous.ranked()
        order = jnp.argsort(-ranked, stable=True)
        slots = jnp.arange(q) < sizes[stage]
        fresh = WorkQueue.of(sample_unseen(self.space, key, history, q), slots)
        # Failed (NaN) architectures are never promoted.
        promoted = WorkQueue.of(previous.archs[order], slots & jnp.isfinite(ranked[order]))
        return jax.tree_util.tree_map(lambda a, b: jnp.where(first[stage], a, b), fresh, promoted)

    def _init(self, key: jax.Array) -> tuple[jax.Array, dict]:
        key, sub = jax.random.split(key)
        q = int(self.schedule()[0].max())
        empty = WorkQueue.of(jnp.zeros((q, *self.space.encoding_shape), jnp.int32), jnp.zeros(q, bool))
        nothing_told = History.empty(self.capacity, self.space.encoding_shape)
        return key, dict(budgets=jnp.full((self.capacity,), jnp.nan, jnp.float32),
                         stage=jnp.zeros((), jnp.int32),
                         queue=self._rung(sub, jnp.zeros((), jnp.int32), empty, nothing_told))

    def ask_with_budget(self, state: HyperbandState, n: int
                        ) -> tuple[jax.Array, jax.Array, HyperbandState]:
        """archs int32 (n, *enc), budgets float32 (n,), new state."""
        key, sub = jax.random.split(state.key)
        archs, from_queue, queue = state.queue.take(self.space.sample(sub, n))
        budgets = jnp.where(from_queue, jnp.asarray(self.schedule()[1])[state.stage], self.min_budget)
        return archs, budgets.astype(jnp.float32), state.replace(key=key, queue=queue)

    def ask(self, state: HyperbandState, n: int) -> tuple[jax.Array, HyperbandState]:
        archs, _, state = self.ask_with_budget(state, n)
        return archs, state

    def _tell(self, state: HyperbandState, archs: jax.Array, scores: jax.Array) -> HyperbandState:
        n_stages = len(self.schedule()[0])
        rung_budget = jnp.asarray(self.schedule()[1])[state.stage]
        hit, queue = state.queue.record(archs, scores)
        # The history rows these archs went to: those after the rows holding a budget (history.count
        # is already past them, and stops at capacity, where the rows past it are dropped).
        rows = jnp.sum(~jnp.isnan(state.budgets)) + jnp.arange(archs.shape[0])
        budgets = state.budgets.at[rows].set(jnp.where(hit, rung_budget, self.min_budget), mode="drop")
        state = state.replace(budgets=budgets, queue=queue)

        def advance(carry):
            st, steps = carry
            key, sub = jax.random.split(st.key)
            stage = (st.stage + 1) % n_stages
            queue = self._rung(sub, stage, st.queue, st.history)
            return st.replace(key=key, stage=stage, queue=queue), steps + 1

        # A rung whose candidates all failed is empty, hence complete at once: advance again.
        state, _ = jax.lax.while_loop(lambda c: c[0].queue.complete & (c[1] <= n_stages), advance,
                                      (state, 0))
        return state


@register("successive_halving")
@dataclasses.dataclass(frozen=True)
class SuccessiveHalving(Hyperband):
    """Hyperband's most aggressive bracket, repeated."""

    brackets: int | None = 1
