"""The search-tree helpers shared by LaNAS and MCTS: path constraints in heap order, back-propagated
node statistics, and the UCB rule."""

import jax.numpy as jnp
import numpy as np

from nasjax.search import tree


def test_common_depth_counts_leading_path_constraints():
    height = 4  # leaves 7..14
    leaves = jnp.arange(7, 15)
    # Leaf 7's path goes left, left, left: leaf 8 shares 2 constraints, leaves 9-10 one, 11-14 none.
    np.testing.assert_array_equal(tree.common_depth(leaves, jnp.int32(7), height),
                                  [3, 2, 1, 1, 0, 0, 0, 0])
    # Node 2 (the root's right child): the right half satisfies its one constraint.
    np.testing.assert_array_equal(tree.common_depth(leaves, jnp.int32(2), height),
                                  [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(tree.common_depth(leaves, jnp.int32(0), height), np.zeros(8))


def test_node_stats_back_propagate_leaf_counts():
    leaves = jnp.asarray([3, 3, 4, 6, 6])  # height 3: leaves 3..6
    scores = jnp.asarray([1.0, jnp.nan, 2.0, 4.0, 5.0])
    told = jnp.asarray([True, True, True, True, False])
    visits, scored, total = tree.node_stats(leaves, scores, told, 3)
    np.testing.assert_array_equal(visits, [4, 3, 1, 2, 1, 0, 1])
    np.testing.assert_array_equal(scored, [3, 2, 1, 1, 1, 0, 1])
    np.testing.assert_allclose(total, [7.0, 3.0, 4.0, 1.0, 2.0, 0.0, 4.0])


def test_ucb_prefers_unvisited_children_then_value_plus_bonus():
    u = tree.ucb(jnp.asarray([5.0, 0.0, 1.0]), jnp.asarray([4, 0, 1]), jnp.int32(5), jnp.float32(0.5))
    assert np.isinf(u[1])
    np.testing.assert_allclose(u[0], 5.0 + np.sqrt(2 * np.log(5) / 4), rtol=1e-6)
    np.testing.assert_allclose(u[2], 1.0 + np.sqrt(2 * np.log(5) / 1), rtol=1e-6)
