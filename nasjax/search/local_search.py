"""Local search (hill climbing) as in White et al. 2021 (`003_*`): evaluate a random architecture, then
all of its neighbours; move to the best neighbour if it beats the current architecture, otherwise the
current one is a local optimum and the search restarts at a new random architecture (one not
evaluated before, where the space allows: `sample_unseen`).

Neighbours already in the history are not evaluated again: their recorded scores are used.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from nasjax.search.base import History, State, Strategy, WorkQueue, match, register, sample_unseen


@struct.dataclass
class LocalSearchState(State):
    """current int32 (*enc) and current_score float32 (-inf before the first move);
    queue: the current neighbourhood (or, on a restart, the random start in slot 0)."""

    current: jax.Array
    current_score: jax.Array
    queue: WorkQueue
    restart: jax.Array


@register("local_search")
@dataclasses.dataclass(frozen=True)
class LocalSearch(Strategy):
    """Hill climbing with random restarts. `ask(n)` hands out the pending neighbours in order; when
    fewer remain than asked (the rest are still being evaluated), the extra slots get uniform random
    architectures, which join the history (and are reused if they turn up as neighbours later).
    `max_steps` bounds the moves/restarts taken in one `tell` through already-evaluated regions."""

    max_steps: int = 64
    state_class = LocalSearchState

    @property
    def _queue_size(self) -> int:
        enc = jax.ShapeDtypeStruct(self.space.encoding_shape, jnp.int32)
        return jax.eval_shape(self.space.neighbors, enc)[1].shape[0]

    def _restart_queue(self, key: jax.Array, history: History) -> WorkQueue:
        start = sample_unseen(self.space, key, history, 1)
        archs = jnp.broadcast_to(start, (self._queue_size, *start.shape[1:]))
        return _with_known(WorkQueue.of(archs, jnp.arange(self._queue_size) == 0), history)

    def _neighbour_queue(self, enc: jax.Array, history: History) -> WorkQueue:
        nbrs, real = self.space.neighbors(enc)
        return _with_known(WorkQueue.of(nbrs, real), history)

    def _init(self, key: jax.Array) -> tuple[jax.Array, dict]:
        key, sub = jax.random.split(key)
        history = History.empty(self.capacity, self.space.encoding_shape)
        return key, dict(current=jnp.zeros(self.space.encoding_shape, jnp.int32),
                         current_score=jnp.asarray(-jnp.inf, jnp.float32),
                         queue=self._restart_queue(sub, history), restart=jnp.asarray(True))

    def ask(self, state: LocalSearchState, n: int) -> tuple[jax.Array, LocalSearchState]:
        key, sub = jax.random.split(state.key)
        archs, _, queue = state.queue.take(self.space.sample(sub, n))
        return archs, state.replace(key=key, queue=queue)

    def _step(self, state: LocalSearchState) -> LocalSearchState:
        """The queue is complete: move to its best entry if that improves, else restart."""
        key, sub = jax.random.split(state.key)
        ranked = state.queue.ranked()
        best = jnp.where(state.restart, 0, jnp.argmax(ranked))
        bar = jnp.where(state.restart, -jnp.inf, state.current_score)
        move = ranked[best] > bar  # a NaN (-inf) start or no improving neighbour -> restart
        cand = state.queue.archs[best]
        moved = self._neighbour_queue(cand, state.history)
        fresh = self._restart_queue(sub, state.history)
        return state.replace(
            key=key, current=jnp.where(move, cand, state.current),
            current_score=jnp.where(move, ranked[best], state.current_score),
            queue=jax.tree_util.tree_map(lambda a, b: jnp.where(move, a, b), moved, fresh),
            restart=~move)

    def _tell(self, state: LocalSearchState, archs: jax.Array, scores: jax.Array) -> LocalSearchState:
        _, queue = state.queue.record(archs, scores)
        state = state.replace(queue=queue)

        def cond(carry):
            st, steps = carry
            return st.queue.complete & (steps < self.max_steps)

        state, _ = jax.lax.while_loop(cond, lambda c: (self._step(c[0]), c[1] + 1), (state, 0))
        return state


def _with_known(queue: WorkQueue, history: History) -> WorkQueue:
    """Mark the entries already in the history as done, with their recorded scores."""
    found, first = match(history.encodings, history.filled, queue.archs)
    found = found & queue.real
    return queue.replace(asked=queue.asked | found, done=queue.done | found,
                         scores=jnp.where(found, history.scores[first], queue.scores))
