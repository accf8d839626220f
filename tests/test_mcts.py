"""MCTS over fixed action spaces (`002_*` §2): the action trees of ConvNetSpace and NASBench201Space
cover the space once, asks never repeat a network before exhaustion, statistics back-propagate, and
both orders find the optimum of a deterministic synthetic objective on the 1,364-network motivating
space; spaces without an action space or too large for the tree are refused with the reason."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax import search
from nasjax.search import base, mcts
from nasjax.spaces import ConvNetSpace, DARTSSpace, NASBench101Space
from nasjax.spaces.nasbench201 import NASBench201Space

SPACE = ConvNetSpace.motivating()
TARGET = SPACE.encode([(64, 5), (32, 3), (64, 5), (64, 3)])
SIZE = SPACE.size()
ORDERS = ["mcts_sequential", "mcts_global"]


def synthetic(archs: jax.Array) -> jax.Array:
    """float32 (n,): 0 at TARGET, negative elsewhere."""
    feats = jax.vmap(SPACE.features)(archs)
    scale = jnp.asarray([1.0] + [32.0 ** 2] * 5 + [2.0 ** 2] * 5)
    return -jnp.sum((feats - SPACE.features(jnp.asarray(TARGET))) ** 2 / scale, axis=1)


@pytest.mark.parametrize("space", [SPACE, NASBench201Space()], ids=["convnet", "nb201"])
@pytest.mark.parametrize("order", mcts.ORDERS)
def test_action_tree_covers_the_space_once(space, order):
    tree = mcts.action_tree(space, order)
    size = space.size()
    last = tree.paths[np.arange(size), (tree.paths < tree.num_nodes).sum(axis=1) - 1]
    np.testing.assert_array_equal(tree.member[last], np.arange(size))
    assert (tree.member >= 0).sum() == size and tree.subtree[0] == size
    # Terminals are leaves (no sequence is a prefix of another).
    assert np.all(tree.children[tree.member >= 0] < 0)
    # The root's branching: ConvNet: 5 depths (global) or the first layer's kernel (sequential);
    # NB-201: the first edge exists or not (global) or its op (sequential).
    expected = {("convnet", "global"): 5, ("convnet", "sequential"): len(SPACE.kernels),
                ("nb201", "global"): 2, ("nb201", "sequential"): 5}
    kind = "convnet" if space is SPACE else "nb201"
    assert (tree.children[0] >= 0).sum() == expected[kind, order]


def test_nb201_global_decides_the_edges_first():
    enc = np.asarray([0, 3, 1, 0, 4, 2])
    assert NASBench201Space().actions(enc, "global") == [0, 1, 1, 0, 1, 1, 2, 0, 3, 1]
    assert NASBench201Space().actions(enc, "sequential") == enc.tolist()


@pytest.mark.parametrize("name", ORDERS)
def test_asks_cover_the_space_with_valid_encodings(name):
    strat = base.make(name, SPACE, capacity=SIZE)
    ask = jax.jit(strat.ask, static_argnums=1)
    state, asked = strat.init(jax.random.key(0)), []
    for _ in range(SIZE // 62):  # 22 asks of 62, no tell: all pending
        archs, state = ask(state, 62)
        asked.append(np.asarray(archs))
    asked = np.concatenate(asked)
    assert bool(jnp.all(jax.vmap(SPACE.is_valid)(jnp.asarray(asked))))
    assert len(np.unique(asked, axis=0)) == SIZE


def test_unvisited_children_come_first_and_values_back_propagate():
    strat = base.make("mcts_global", SPACE, capacity=16)
    state = strat.init(jax.random.key(1))
    depths = []
    for _ in range(5):  # the root has 5 children (depths): each is tried once before any repeat
        archs, state = strat.ask(state, 1)
        state = strat.tell(state, archs, synthetic(archs))
        depths.append(int(archs[0, 0]))
    assert sorted(depths) == [1, 2, 3, 4, 5]
    assert int(state.visits[0]) == 5 and int(state.scored[0]) == 5
    np.testing.assert_allclose(state.total[0], np.sum(np.asarray(state.history.scores[:5])), rtol=1e-5)
    state = strat.tell(state, archs, jnp.asarray([jnp.nan]))
    assert int(state.visits[0]) == 6 and int(state.scored[0]) == 5


@pytest.mark.parametrize("name", ORDERS)
def test_finds_the_optimum_sooner_than_random_search(name):
    """4 searches asking the whole space (so each finds the optimum): all distinct, and the median
    evaluations to the optimum below uniform random search's exact median, SIZE / 2."""
    strat = base.make(name, SPACE, capacity=SIZE)

    def one(key):
        return search.scan(strat, lambda archs, _: synthetic(archs), key, SIZE // 11, 11)

    final = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(2), 4))
    scores = np.asarray(final.history.scores)
    np.testing.assert_array_equal(np.max(scores, axis=1), np.zeros(4))
    assert all(len(np.unique(e, axis=0)) == SIZE for e in np.asarray(final.history.encodings))
    first = np.argmax(scores == 0.0, axis=1) + 1
    assert np.median(first) < SIZE / 2, f"evaluations to the optimum: {sorted(first)}"


@pytest.mark.parametrize("config, message", [
    (dict(action_order="random"), "action_order must be one of"),
    (dict(cp=-1.0), "cp and cp_scale must be >= 0"),
    (dict(max_catalogue=100), "more than max_catalogue=100"),
])
def test_bad_config_is_a_clear_error(config, message):
    with pytest.raises(ValueError, match=message):
        mcts.MCTS(SPACE, **config)


@pytest.mark.parametrize("name", ORDERS)
@pytest.mark.parametrize("space", [NASBench101Space(), DARTSSpace()], ids=["nb101", "darts"])
def test_unsupported_spaces_are_declared_and_refused(name, space):
    cls = base.STRATEGIES[name]
    assert cls.unsupported(SPACE) is None and cls.unsupported(NASBench201Space()) is None
    assert f"has no '{cls.action_order}' action space" in cls.unsupported(space)
    with pytest.raises(ValueError, match="action space"):
        base.make(name, space)
    assert "more than max_catalogue=100" in mcts.refusal(SPACE, cls.action_order, 100)
