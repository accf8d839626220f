"""MCTS over a fixed, hand-designed action space (`002_*` §2, the motivating example). The space
supplies the action sequences (`ActionOrders.action_orders`, `.actions`); two orders build the same
architectures along different trees, e.g. for `ConvNetSpace`:

* ``sequential``: per layer, add a layer or stop, then its kernel, then its channels;
* ``global``: the depth first, then the kernel of every layer, then the channels of every layer;

and for `NASBench201Space` the ops edge by edge (sequential), or which edges exist first (global).

The whole tree is small for the spaces MCTS is meant for (2,724 nodes for the 1,364-network
motivating space in global order), so it is built once on the host as a trie of every network's action
sequence and stored in fixed-size arrays: children int32 (nodes, B) indexed by action. Node statistics
(visits, successful visits, sum of successful scores) live in the state.

`ask`: per architecture, descend from the root choosing the child of highest UCB (`tree.ucb`, ties
at random) until the first unvisited node, then roll out uniformly at random among the available
children to a terminal. Subtrees whose networks have all been asked or told are skipped, so no
network is asked twice until the space is exhausted (then any may be). `tell` back-propagates each
score along the network's path. NaN scores count as visits but not in values (as in LaNAS).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from nasjax.search.base import State, Strategy, catalogue, enumerable, register
from nasjax.search.tree import exploration, node_values, ucb
from nasjax.spaces.base import ActionOrders, Space

ORDERS = ("sequential", "global")


def refusal(space: Space, order: str, max_catalogue: int) -> str | None:
    """Why MCTS in `order` cannot search `space` (None when it can): the space must offer the
    action order (`ActionOrders.action_orders`) and be enumerable within `max_catalogue`."""
    offered = space.action_orders() if isinstance(space, ActionOrders) else ()
    if order not in offered:
        return (f"{type(space).__name__} has no {order!r} action space"
                + (f" (it has {', '.join(offered)})" if offered else ""))
    if not enumerable(space, max_catalogue):
        size = "an unknown number of" if space.size() is None else f"{space.size():,}"
        return (f"MCTS stores the whole action tree: {type(space).__name__} has {size} members, "
                f"more than max_catalogue={max_catalogue:,}")
    return None


@dataclasses.dataclass(frozen=True, eq=False)
class ActionTree:
    """A trie of every network's action sequence (host-side numpy).

    children int32 (nodes, B): child reached by each action, -1 where none; member int32 (nodes,):
    catalogue index of the network a terminal node builds, -1 elsewhere; paths int32 (size, A + 1):
    the nodes from the root to each network's terminal, padded with `nodes` (an out-of-range index
    dropped by scatters); subtree int32 (nodes,): networks below each node.
    """

    children: np.ndarray
    member: np.ndarray
    paths: np.ndarray
    subtree: np.ndarray

    @property
    def num_nodes(self) -> int:
        return self.children.shape[0]

    @property
    def max_actions(self) -> int:
        return self.paths.shape[1] - 1


@functools.lru_cache(maxsize=16)
def action_tree(space: Space, order: str) -> ActionTree:
    """The action tree of `space` in `order` (cached)."""
    members = catalogue(space)
    seqs = [space.actions(enc, order) for enc in members]
    branching = 1 + max(max(seq) for seq in seqs if seq)
    children = [[-1] * branching]
    member = [-1]
    paths = []
    for idx, seq in enumerate(seqs):
        node, path = 0, [0]
        for a in seq:
            if children[node][a] < 0:
                children[node][a] = len(children)
                children.append([-1] * branching)
                member.append(-1)
            node = children[node][a]
            path.append(node)
        member[node] = idx
        paths.append(path)
    nodes = len(children)
    width = max(len(p) for p in paths)
    padded = np.full((len(paths), width), nodes, np.int32)
    for i, p in enumerate(paths):
        padded[i, :len(p)] = p
    subtree = np.bincount(padded.ravel(), minlength=nodes + 1)[:nodes].astype(np.int32)
    return ActionTree(children=np.asarray(children, np.int32), member=np.asarray(member, np.int32),
                      paths=padded, subtree=subtree)


@struct.dataclass
class MCTSState(State):
    """visits int32 (nodes,): told networks below each node; scored int32 (nodes,):
    those with a finite score; total float32 (nodes,): sum of those scores; taken bool (size,):
    networks asked or told."""

    visits: jax.Array
    scored: jax.Array
    total: jax.Array
    taken: jax.Array


@dataclasses.dataclass(frozen=True)
class MCTS(Strategy):
    """(Registered as "mcts_sequential" and "mcts_global".) UCB tree search over the space's
    `action_order` ("sequential" or "global") action tree (`Space.actions`), UCB constant
    cp + cp_scale * max|score| (LaNAS's `PAPER_EXPLORATION` spread), spaces of at most
    `max_catalogue` networks."""

    action_order: str = "sequential"
    cp: float = 0.0
    cp_scale: float = 0.1
    max_catalogue: int = 200_000
    HPARAMS = ("cp", "cp_scale")
    state_class = MCTSState

    def __post_init__(self):
        super().__post_init__()
        if self.action_order not in ORDERS:
            raise ValueError(f"action_order must be one of {ORDERS}, got {self.action_order!r}")
        why = refusal(self.space, self.action_order, self.max_catalogue)
        if why:
            raise ValueError(why)
        if self.cp < 0 or self.cp_scale < 0:
            raise ValueError(f"cp and cp_scale must be >= 0, got {self.cp}, {self.cp_scale}")

    @classmethod
    def unsupported(cls, space: Space) -> str | None:
        return refusal(space, cls.action_order, cls.max_catalogue)

    @property
    def tree(self) -> ActionTree:
        return action_tree(self.space, self.action_order)

    def _init(self, key: jax.Array) -> tuple[jax.Array, dict]:
        nodes = self.tree.num_nodes
        return key, dict(visits=jnp.zeros((nodes,), jnp.int32), scored=jnp.zeros((nodes,), jnp.int32),
                         total=jnp.zeros((nodes,), jnp.float32),
                         taken=jnp.zeros((self.space.size(),), bool))

    def ask(self, state: MCTSState, n: int) -> tuple[jax.Array, MCTSState]:
        tree = self.tree
        children, member, paths = (jnp.asarray(a) for a in (tree.children, tree.member, tree.paths))
        key, sub = jax.random.split(state.key)
        c = exploration(state.history, state.hparams["cp"], state.hparams["cp_scale"], "max")
        value = node_values(state.total, state.scored, state.history)
        # Untaken networks below each node; updated as this ask takes networks.
        remaining = jnp.zeros((tree.num_nodes,), jnp.int32).at[paths].add(
            jnp.broadcast_to(~state.taken[:, None], paths.shape).astype(jnp.int32), mode="drop")

        def descend(remaining, key):
            avail = jnp.where(remaining[0] > 0, remaining > 0, True)  # exhausted: anything goes
            noise = jax.random.uniform(key, (tree.max_actions, children.shape[1]))
            node, rolling = jnp.zeros((), jnp.int32), jnp.zeros((), bool)
            for step in range(tree.max_actions):
                kids = children[node]
                ok = (kids >= 0) & avail[jnp.maximum(kids, 0)]
                u = jnp.where(ok, ucb(value[kids], state.visits[kids], state.visits[node], c),
                              -jnp.inf)
                allowed = jnp.where(rolling, ok, ok & (u == jnp.max(u)))
                nxt = kids[jnp.argmax(jnp.where(allowed, noise[step], -1.0))]
                terminal = ~jnp.any(ok)
                rolling = rolling | (state.visits[nxt] == 0)
                node = jnp.where(terminal, node, nxt)
            idx = member[node]
            return remaining.at[paths[idx]].add(-1, mode="drop"), idx

        _, idx = jax.lax.scan(descend, remaining, jax.random.split(sub, n))
        archs = jnp.asarray(catalogue(self.space))[idx]
        return archs, state.replace(key=key, taken=state.taken.at[idx].set(True))

    def _tell(self, state: MCTSState, archs: jax.Array, scores: jax.Array) -> MCTSState:
        idx = jax.vmap(self.space.index)(archs)
        path = jnp.asarray(self.tree.paths)[idx]  # (n, A + 1)
        ok = jnp.broadcast_to(jnp.isfinite(scores)[:, None], path.shape)
        return state.replace(
            visits=state.visits.at[path].add(1, mode="drop"),
            scored=state.scored.at[path].add(ok.astype(jnp.int32), mode="drop"),
            total=state.total.at[path].add(jnp.where(ok, scores[:, None], 0.0), mode="drop"),
            taken=state.taken.at[idx].set(True))


@register("mcts_sequential")
@dataclasses.dataclass(frozen=True)
class MCTSSequential(MCTS):
    """MCTS in the `sequential` order (add layer, kernel, channels; repeated)."""

    action_order: str = "sequential"


@register("mcts_global")
@dataclasses.dataclass(frozen=True)
class MCTSGlobal(MCTS):
    """MCTS in the `global` order (depth; kernels of all layers; channels of all layers)."""

    action_order: str = "global"
