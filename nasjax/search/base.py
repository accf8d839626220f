"""The strategy protocol shared by every search strategy, its history, and the registry.

A strategy is a frozen dataclass of static configuration (hashable, so it can be a static argument):
    strategy = nasjax.search.make("lanas", space, **config)   # or nasjax.search.LaNAS(space, ...)
    state = strategy.init(key)
    archs, state = strategy.ask(state, n)        # archs: int32 (n, *space.encoding_shape); n static
    state = strategy.tell(state, archs, scores)  # scores: float32 (n,), higher is better, NaN = failed
State is an immutable pytree (a `flax.struct.dataclass` subclassing `State`) holding the PRNG key, a
fixed-capacity `History` and the numeric hyperparameters (`hparams`), so `init/ask/tell` jit and
`jax.vmap` over keys runs many independent searches. The strategy's numbers named in `HPARAMS`
(LaNAS's `cp`, NAO's `trade_off`, ...) are read from `state.hparams`, not from the strategy:
`strategy.init(key, hparams)` with batched hparams sweeps them in one compiled program
(`nasjax.search.scan`); `init(key)` takes the strategy's own values (`default_hparams`).

Multi-fidelity strategies (hyperband) also define
    archs, budgets, state = strategy.ask_with_budget(state, n)  # budgets: float32 (n,) epochs
their plain `ask` returns the same architectures and keeps the budgets in the state, so `tell` needs
no extra argument; `nasjax.search.run` calls their objectives as objective(archs, key, budgets).

Writing a strategy: implement `_init(key)` (its own state fields; `Strategy.init` adds the key, the
history and the hparams), `ask` and `_tell(state, archs, scores)`. `Strategy.tell` does
the bookkeeping every strategy shares (shape checks, archs to int32 and scores to float32, appending
to `state.history`) and then calls `_tell`, whose `state.history` already holds the told rows.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from nasjax.search.numerics import mul
from nasjax.spaces.base import Space


@struct.dataclass
class History:
    """Every architecture told so far, in order.

    encodings int32 (capacity, *encoding_shape); scores float32 (capacity,) (NaN = failed or unused);
    count int32 scalar: rows [0, count) are filled.
    """

    encodings: jax.Array
    scores: jax.Array
    count: jax.Array

    @classmethod
    def empty(cls, capacity: int, encoding_shape: tuple[int, ...]) -> "History":
        return cls(encodings=jnp.zeros((capacity, *encoding_shape), jnp.int32),
                   scores=jnp.full((capacity,), jnp.nan, jnp.float32),
                   count=jnp.zeros((), jnp.int32))

    @property
    def capacity(self) -> int:
        return self.scores.shape[-1]

    @property
    def filled(self) -> jax.Array:
        """bool (capacity,): which rows hold a told architecture."""
        return jnp.arange(self.capacity) < self.count

    def add(self, archs: jax.Array, scores: jax.Array) -> "History":
        """Append n rows (rows past capacity are dropped; size the capacity to the budget)."""
        n = archs.shape[0]
        idx = self.count + jnp.arange(n)
        keep = idx < self.capacity
        safe = jnp.where(keep, idx, self.capacity)  # out-of-range index -> dropped by mode="drop"
        return History(
            encodings=self.encodings.at[safe].set(archs.astype(jnp.int32), mode="drop"),
            scores=self.scores.at[safe].set(scores.astype(jnp.float32), mode="drop"),
            count=jnp.minimum(self.count + n, self.capacity),
        )

    def ranked_scores(self) -> jax.Array:
        """Scores with failed (NaN) and unused rows as -inf, for argmax/selection."""
        return jnp.where(self.filled & jnp.isfinite(self.scores), self.scores, -jnp.inf)

    def best(self) -> tuple[jax.Array, jax.Array]:
        """(encoding, score) of the best architecture told so far."""
        i = jnp.argmax(self.ranked_scores())
        return self.encodings[i], self.ranked_scores()[i]


@struct.dataclass
class WorkQueue:
    """A fixed-size list of architectures to evaluate, handed out in order (local search's
    neighbourhood, a successive-halving rung).

    archs int32 (Q, *enc); real bool (Q,) (False = padding); asked, done bool (Q,); scores float32 (Q,)
    (NaN until done).
    """

    archs: jax.Array
    real: jax.Array
    asked: jax.Array
    done: jax.Array
    scores: jax.Array

    @classmethod
    def of(cls, archs: jax.Array, real: jax.Array) -> "WorkQueue":
        q = real.shape[0]
        return cls(archs=archs.astype(jnp.int32), real=real, asked=jnp.zeros((q,), bool),
                   done=jnp.zeros((q,), bool), scores=jnp.full((q,), jnp.nan, jnp.float32))

    @property
    def complete(self) -> jax.Array:
        """bool scalar: every real entry has a score."""
        return jnp.all(self.done | ~self.real)

    def ranked(self) -> jax.Array:
        """float32 (Q,): scores of scored entries, -inf for padding, pending and failed ones."""
        ok = self.real & self.done & jnp.isfinite(self.scores)
        return jnp.where(ok, self.scores, -jnp.inf)

    def take(self, fillers: jax.Array) -> tuple[jax.Array, jax.Array, "WorkQueue"]:
        """Hand out the next n = len(fillers) entries not yet asked, in order; slots beyond the
        remaining entries get the `fillers` (int32 (n, *enc)).

        -> (archs int32 (n, *enc), from_queue bool (n,), queue with those entries marked asked).
        """
        n, q = fillers.shape[0], self.real.shape[0]
        # Stable argsort of "not askable" lists the askable entries first, in queue order.
        order = jnp.argsort(~(self.real & ~self.asked), stable=True)
        pos = order[jnp.minimum(jnp.arange(n), q - 1)]
        from_queue = (jnp.arange(n) < q) & self.real[pos] & ~self.asked[pos]
        expand = from_queue.reshape((n,) + (1,) * (fillers.ndim - 1))
        archs = jnp.where(expand, self.archs[pos], fillers.astype(jnp.int32))
        # .max, not .set: padded positions repeat and scatter order among duplicates is unspecified.
        return archs, from_queue, self.replace(asked=self.asked.at[pos].max(from_queue))

    def record(self, archs: jax.Array, scores: jax.Array) -> tuple[jax.Array, "WorkQueue"]:
        """Give each outstanding (asked, unscored) entry the score of an equal told architecture.

        archs int32 (n, *enc), scores float32 (n,) -> (hit bool (n,): told arch matched an
        outstanding entry, updated queue).
        """
        outstanding = self.real & self.asked & ~self.done
        found, first = match(archs, jnp.ones(archs.shape[0], bool), self.archs)
        found = found & outstanding
        hit, _ = match(self.archs, outstanding, archs)
        return hit, self.replace(done=self.done | found,
                                 scores=jnp.where(found, scores[first], self.scores))


@struct.dataclass
class State:
    """What every strategy's state holds: key (split at each use, never reused); history;
    hparams dict name -> float32 scalar (the strategy's `HPARAMS`)."""

    key: jax.Array
    history: History
    hparams: dict


def check_told(space: Space, archs: jax.Array, scores: jax.Array) -> None:
    """chex shape checks for `tell`: archs (n, *encoding_shape), scores (n,)."""
    chex.assert_shape(archs, (None, *space.encoding_shape))
    chex.assert_shape(scores, (archs.shape[0],))


@dataclasses.dataclass(frozen=True)
class Strategy:
    """Base of every strategy: the space, and the history capacity (the largest budget it will see)."""

    space: Space
    capacity: int = 2048

    # The numeric hyperparameters (dataclass fields) that the search reads from `state.hparams`.
    HPARAMS: ClassVar[tuple[str, ...]] = ()
    # The state class `init` builds (a `State` subclass with the strategy's own fields).
    state_class: ClassVar[type] = State

    def __post_init__(self):
        """ValueError unless `space` is a Space and `capacity` an integer >= 1; a subclass's own
        `__post_init__` calls this first, then checks its fields."""
        if not isinstance(self.space, Space):
            raise ValueError(f"space must be a nasjax Space, got {self.space!r}")
        capacity = self.capacity
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1 (history rows), got {capacity!r}")

    @classmethod
    def unsupported(cls, space: Space) -> str | None:
        """Why this strategy, with its default configuration, cannot search `space`; None when it
        can. Experiments ask this before constructing, so that a construction error stays an error."""
        return None

    def default_hparams(self) -> dict[str, jax.Array]:
        """The strategy's own `HPARAMS` values as float32 scalars."""
        return {name: jnp.float32(getattr(self, name)) for name in self.HPARAMS}

    def init(self, key: jax.Array, hparams: dict | None = None) -> State:
        """The initial state: `key` (or what `_init` keeps of it), an empty history of `capacity`
        rows, `hparams` (default: `default_hparams()`; a dict with exactly the `HPARAMS` names,
        float32 scalars, batched when the call is vmapped) and the strategy's own fields."""
        if hparams is None:
            hparams = self.default_hparams()
        elif set(hparams) != set(self.HPARAMS):
            raise ValueError(f"{type(self).__name__} hparams must name exactly {sorted(self.HPARAMS)}, "
                             f"got {sorted(hparams)}")
        hparams = {name: jnp.asarray(hparams[name], jnp.float32) for name in self.HPARAMS}
        key, fields = self._init(key)
        return self.state_class(key=key, history=History.empty(self.capacity, self.space.encoding_shape),
                                hparams=hparams, **fields)

    def _init(self, key: jax.Array) -> tuple[jax.Array, dict]:
        """-> (the key the state keeps, the strategy's own initial state fields)."""
        return key, {}

    def ask(self, state, n: int):
        raise NotImplementedError

    def tell(self, state, archs: jax.Array, scores: jax.Array):
        """Record archs int (n, *enc) with scores float (n,) in `state.history`, then update the
        strategy's own state (`_tell`)."""
        check_told(self.space, archs, scores)
        archs, scores = archs.astype(jnp.int32), scores.astype(jnp.float32)
        return self._tell(state.replace(history=state.history.add(archs, scores)), archs, scores)

    def _tell(self, state, archs: jax.Array, scores: jax.Array):
        """The strategy's own update after `tell` appended archs int32 (n, *enc), scores float32
        (n,) to `state.history` (nothing else by default)."""
        return state


@dataclasses.dataclass(frozen=True)
class ModelBased(Strategy):
    """Shared ask/tell of model-based strategies (BO, TPE): uniform random (unseen first, see
    `sample_unseen`) until `n_init` successful evaluations, then the n best distinct candidates by
    `acquisition` from a pool of `n_random` uniform samples and `n_mutate` mutations. Candidates
    already in the history are excluded."""

    n_init: int = 10
    n_random: int = 256
    n_mutate: int = 64

    def acquisition(self, key: jax.Array, history: History, hparams: dict) -> tuple[jax.Array, jax.Array]:
        """-> (pool int32 (n_random + n_mutate, *enc), acquisition value float32 (pool,))."""
        raise NotImplementedError

    def _propose(self, key: jax.Array, history: History, hparams: dict, n: int) -> jax.Array:
        pool, value = self.acquisition(key, history, hparams)
        seen, _ = match(history.encodings, history.filled, pool)
        value = jnp.where(~seen & first_occurrence(pool) & ~jnp.isnan(value), value, -jnp.inf)
        return pool[jax.lax.top_k(value, n)[1]]

    def ask(self, state: State, n: int) -> tuple[jax.Array, State]:
        if n > self.n_random + self.n_mutate:
            raise ValueError(f"ask(n={n}) exceeds the candidate pool ({self.n_random + self.n_mutate})")
        key, k_rand, k_model = jax.random.split(state.key, 3)
        told = jnp.sum(state.history.filled & jnp.isfinite(state.history.scores))
        archs = uniform_cond(told >= self.n_init,
                             lambda k_model, _, history, hp: self._propose(k_model, history, hp, n),
                             lambda _, k_rand, history, __: sample_unseen(self.space, k_rand, history, n),
                             k_model, k_rand, state.history, state.hparams)
        return archs, state.replace(key=key)


def uniform_cond(pred: jax.Array, true_fn: Callable, false_fn: Callable, *operands):
    """`jax.lax.cond(pred, true_fn, false_fn, *operands)` that stays a conditional under `jax.vmap`
    when every member of the batch takes the same branch.

    `lax.cond` with a batched predicate becomes a select: both branches run for every member. Here
    the batched program runs only the branch that all members take, and both (then a select) only
    when they disagree; so searches vmapped over seeds whose schedules agree (a refit every k told
    architectures, with the same ask sizes) skip the work their unbatched counterparts skip. The
    results are those of `lax.cond` either way. The batched program holds `true_fn` once and
    `false_fn` twice: make `true_fn` the expensive branch. The branches must take every traced
    value they use as an operand (a closed-over batched value would be invisible to the batching
    rule).
    """

    @jax.custom_batching.custom_vmap
    def cond(pred, *operands):
        return jax.lax.cond(pred, true_fn, false_fn, *operands)

    @cond.def_vmap
    def cond_vmap(axis_size, in_batched, pred, *operands):
        operands = [jax.tree_util.tree_map(
            lambda a, batched: a if batched else jnp.broadcast_to(a, (axis_size, *a.shape)), op, b)
            for op, b in zip(operands, in_batched[1:])]
        true_b, false_b = jax.vmap(true_fn), jax.vmap(false_fn)
        if not in_batched[0]:
            out = uniform_cond(pred, true_b, false_b, *operands)
        else:
            # All members agree: the first conditional gives the answer. Otherwise it gave
            # true_fn's outputs for everyone, and false_fn's are selected where pred is False.
            first = uniform_cond(jnp.any(pred), true_b, false_b, *operands)

            def mixed(pred, first, *ops):
                def pick(a, b):
                    return jax.lax.select(jnp.broadcast_to(pred.reshape(-1, *[1] * (a.ndim - 1)),
                                                           a.shape), a, b)
                return jax.tree_util.tree_map(pick, first, false_b(*ops))

            out = uniform_cond(jnp.any(pred) & ~jnp.all(pred), mixed, lambda _, first, *ops: first,
                               pred, first, *operands)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return cond(pred, *operands)


STRATEGIES: dict[str, Callable[..., Strategy]] = {}


def register(name: str):
    """Class decorator: make a strategy constructible as `make(name, space, **config)`."""

    def deco(cls):
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} registered twice")
        STRATEGIES[name] = cls
        return cls

    return deco


def make(name: str, space: Space, **config) -> Strategy:
    """The registered strategy `name` over `space`; a ValueError naming the argument when `space` or
    `capacity` (or the strategy's own configuration) is not valid."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name](space, **config)


@functools.lru_cache(maxsize=16)
def catalogue(space: Space) -> np.ndarray:
    """`space.enumerate()` as read-only int32, for strategies that work over an enumerable space's
    members (cached per space: strategies call it at every trace)."""
    members = np.array(space.enumerate(), np.int32)
    members.flags.writeable = False
    return members


def enumerable(space: Space, limit: int) -> bool:
    """Whether `space` lists its members, at most `limit` of them (so a mask over them fits in a state)."""
    return space.can_enumerate() and space.size() <= limit


def draw_without_replacement(key: jax.Array, allowed: jax.Array, k: int) -> jax.Array:
    """int32 (k,): k distinct indices of `allowed` (bool (N,)), uniformly without replacement.

    Allowed indices come first; when fewer than k are allowed the rest are disallowed ones, also
    uniformly. (Gumbel top-k; float32 Gumbel noise lies in about [-3, 17], so the +100 lift keeps
    every allowed index ahead of every disallowed one without losing the noise to rounding.)
    """
    g = jax.random.gumbel(key, allowed.shape)
    return jax.lax.top_k(jnp.where(allowed, g + 100.0, g), k)[1].astype(jnp.int32)


def match(rows: jax.Array, mask: jax.Array, queries: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Find each query among the masked rows.

    rows int (R, *enc), mask bool (R,), queries int (Q, *enc) -> (found bool (Q,), first int32 (Q,)):
    whether query q equals some row with mask True, and the first such row (0 when not found).
    """
    axes = tuple(range(2, rows.ndim + 1))
    eq = jnp.all(queries[:, None] == rows[None], axis=axes) & mask[None]
    return jnp.any(eq, axis=1), jnp.argmax(eq, axis=1).astype(jnp.int32)


def sample_unseen(space: Space, key: jax.Array, history: History, n: int,
                  max_catalogue: int = 200_000) -> jax.Array:
    """int32 (n, *enc): n distinct architectures not in the history, uniformly, where possible.

    Enumerable spaces (at most `max_catalogue` members, at least n): drawn from the catalogue
    members not yet told. Otherwise: the unseen among 4n uniform samples come first. Seen ones fill
    in once the space (or the oversample) runs out of unseen architectures.
    """
    if enumerable(space, max_catalogue) and space.size() >= n:
        size = space.size()
        idx = jnp.where(history.filled, jax.vmap(space.index)(history.encodings), size)
        seen = jnp.zeros((size,), bool).at[idx].set(True, mode="drop")
        return jnp.asarray(catalogue(space))[draw_without_replacement(key, ~seen, n)]
    k_pool, k_pick = jax.random.split(key)
    pool = space.sample(k_pool, 4 * n)
    seen, _ = match(history.encodings, history.filled, pool)
    return pool[draw_without_replacement(k_pick, ~seen & first_occurrence(pool), n)]


def candidate_pool(space: Space, key: jax.Array, parents: jax.Array, n_random: int) -> jax.Array:
    """Candidates for model-based strategies: `n_random` uniform samples, then one mutation of each
    parent. parents int32 (P, *enc) -> int32 (n_random + P, *enc)."""
    k_sample, k_mutate = jax.random.split(key)
    mutants = jax.vmap(space.mutate)(jax.random.split(k_mutate, parents.shape[0]), parents)
    return jnp.concatenate([space.sample(k_sample, n_random), mutants.astype(jnp.int32)])


def rank_targets(history: History) -> jax.Array:
    """float32 (capacity,): each successful score's ordinal rank among the successful scores / (their
    count - 1), in [0, 1], ties by history order; 0 on failed and unused rows. Invariant to any
    increasing transform of the scores: a heavy low tail of broken architectures weighs no more than
    any other rank."""
    ranked = history.ranked_scores()  # -inf for failed and unused rows: they sort first
    ok = jnp.isfinite(ranked)
    position = jnp.zeros(ranked.shape, jnp.int32).at[jnp.argsort(ranked, stable=True)].set(
        jnp.arange(ranked.shape[0], dtype=jnp.int32))
    count = jnp.sum(ok)
    rank = (position - (ranked.shape[0] - count)).astype(jnp.float32)
    return jnp.where(ok, mul(rank, 1.0 / jnp.maximum(count - 1, 1).astype(jnp.float32)), 0.0)


def first_occurrence(archs: jax.Array) -> jax.Array:
    """bool (N,): True where archs[i] differs from every earlier row (drops duplicates in a pool)."""
    n = archs.shape[0]
    axes = tuple(range(2, archs.ndim + 1))
    eq = jnp.all(archs[:, None] == archs[None], axis=axes)
    return ~jnp.any(eq & (jnp.arange(n)[None] < jnp.arange(n)[:, None]), axis=1)
