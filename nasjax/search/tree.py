"""Search-tree helpers: LaNAS's complete binary tree in heap order (routing samples by linear
splits, per-node statistics) and the UCB rule that LaNAS and MCTS share.

Heap order: node j has children 2j+1 (left) and 2j+2 (right); a tree of height h has 2^(h-1) - 1
internal nodes followed by 2^(h-1) leaves.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nasjax.search.base import History
from nasjax.search.numerics import exact_sums, mul, project


def descend(node: jax.Array, x: jax.Array, weights: jax.Array, cuts: jax.Array) -> jax.Array:
    """One routing step: samples at internal `node` (int32 (M,)) with features x float32 (F, M)
    go to the left child iff project(x, weights[node]) >= cuts[node] -> child int32 (M,)."""
    left = project(x, weights[node].T) >= cuts[node]
    return 2 * node + jnp.where(left, 1, 2)


def route(x: jax.Array, weights: jax.Array, cuts: jax.Array, height: int) -> jax.Array:
    """Leaf (heap index) of each sample with features x float32 (F, M) -> int32 (M,)."""
    node = jnp.zeros(x.shape[1:], jnp.int32)
    for _ in range(height - 1):
        node = descend(node, x, weights, cuts)
    return node


def node_depth(node: jax.Array) -> jax.Array:
    """Depth of heap node(s) (root: 0)."""
    return 31 - jax.lax.clz(jnp.asarray(node, jnp.int32) + 1)


def common_depth(leaves: jax.Array, node: jax.Array, height: int) -> jax.Array:
    """How many leading constraints of the path to `node` the samples in `leaves` satisfy: the depth
    of the deepest common ancestor of each leaf and `node`, int32 like `leaves`."""
    depth = node_depth(node)
    ancestor = (leaves + 1) >> (height - 1 - depth)  # 1-based heap id of the leaf's ancestor at depth
    differ = ancestor ^ (node + 1)
    return depth - (32 - jax.lax.clz(differ.astype(jnp.int32)))


def node_stats(leaves: jax.Array, scores: jax.Array, told: jax.Array, height: int):
    """Back-propagated statistics of samples at `leaves` (int32 (M,)) with `scores` (M,), counting
    rows where `told` holds -> (visits int32 (T,), scored int32 (T,), total float32 (T,)) per node in
    heap order (a node's entry sums its two children's)."""
    n_leaves = 2 ** (height - 1)
    ok = told & jnp.isfinite(scores)
    columns = jnp.stack([told.astype(jnp.float32), ok.astype(jnp.float32),
                         jnp.where(ok, scores, 0.0)])
    groups = leaves[None] == n_leaves - 1 + jnp.arange(n_leaves)[:, None]
    levels = [exact_sums(groups, columns)]
    while levels[0].shape[0] > 1:  # parents sum their children, pairwise: a fixed order
        levels.insert(0, levels[0][0::2] + levels[0][1::2])
    visits, scored, total = jnp.concatenate(levels).T
    return visits.astype(jnp.int32), scored.astype(jnp.int32), total


def ucb(value: jax.Array, n_child: jax.Array, n_parent: jax.Array, c: jax.Array) -> jax.Array:
    """UCB1 of Algorithm 1: value + 2c sqrt(2 ln n_parent / n_child), +inf for an unvisited child."""
    bonus = mul(2.0 * c, jnp.sqrt(2.0 * jnp.log(jnp.maximum(n_parent, 1)) / jnp.maximum(n_child, 1)))
    return jnp.where(n_child > 0, value + bonus, jnp.inf)


SPREADS = ("std", "max")


def exploration(history: History, cp: float, cp_scale: float, spread: str) -> jax.Array:
    """The UCB constant cp + cp_scale * the spread of the successful scores (0 before any):
    "std": their standard deviation, so UCB's ranking is invariant to an affine rescaling of the
    scores (accuracies in [0, 1] or in percent, perplexities alike); "max": max |score| (the
    paper's, scale-dependent: a shift of the scores changes the bonus). Exact sums (`exact_sums`),
    so that the constant has the same bits in vmapped and separate searches."""
    ok = history.filled & jnp.isfinite(history.scores)
    if spread == "max":
        return cp + mul(cp_scale, jnp.max(jnp.where(ok, jnp.abs(history.scores), 0.0)))
    inv_count = 1.0 / jnp.maximum(jnp.sum(ok), 1).astype(jnp.float32)
    mean = mul(exact_sums(ok[None], jnp.where(ok, history.scores, 0.0)[None])[0, 0], inv_count)
    d = jnp.where(ok, history.scores - mean, 0.0)
    var = mul(exact_sums(ok[None], mul(d, d)[None])[0, 0], inv_count)
    return cp + mul(cp_scale, jnp.sqrt(var))


def node_values(total: jax.Array, scored: jax.Array, history: History) -> jax.Array:
    """Mean successful score per node; the worst successful score seen for nodes without one."""
    ok = history.filled & jnp.isfinite(history.scores)
    worst = jnp.min(jnp.where(ok, history.scores, jnp.inf))
    worst = jnp.where(jnp.isfinite(worst), worst, 0.0)
    return jnp.where(scored > 0, total / jnp.maximum(scored, 1), worst)
