"""The strategy protocol, tested for every registered strategy; then each strategy's own behaviour.

The common objective is a deterministic synthetic score on a 84-architecture ConvNet space whose
unique optimum is known: minus a weighted squared distance between `space.features` and those of a
target network (unimodal under `space.neighbors`: some one-layer edit always moves closer).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax import search
from nasjax.search import base, bo
from nasjax.spaces import ConvNetSpace, NASNetSpace

SPACE = ConvNetSpace(channels=(16, 32), kernels=(3, 5), max_depth=3)
TARGET = SPACE.encode([(32, 5), (16, 3), (32, 5)])
ROUNDS, BATCH = 21, 4  # 84 evaluations: the size of the space
# Small settings so each search compiles and runs in seconds; strategies not listed use defaults.
CONFIGS = {
    "evolution": dict(population_size=10, sample_size=3),
    "hyperband": dict(max_budget=9.0),
    "successive_halving": dict(max_budget=9.0),
    "bo": dict(n_random=64, n_mutate=16, window=84),
    "tpe": dict(n_random=64, n_mutate=16),
    "lanas_bo": dict(n_pool=32, window=84),
    "nao": dict(hidden=8, features=4, train_steps=2, batch_size=8, unlabeled=8, n_parents=4),
    "rnas": dict(hidden=8, features=4, train_steps=2, batch_size=8, unlabeled=8, n_parents=4, n_samples=16),
}
NAMES = sorted(base.STRATEGIES)


def with_slow(names, slow):
    """pytest params of `names`, those in `slow` (20-55 s of compilation each) marked slow."""
    return [pytest.param(n, marks=[pytest.mark.slow] if n in slow else []) for n in names]


# Multi-fidelity strategies spend evaluations on re-evaluating promoted architectures at higher
# budgets, which the synthetic objective ignores: not compared with random search here.
MULTI_FIDELITY = {n for n in NAMES if hasattr(base.STRATEGIES[n], "ask_with_budget")}


@jax.jit
def synthetic(archs: jax.Array) -> jax.Array:
    """float32 (n,): 0 at TARGET, negative elsewhere."""
    feats = jax.vmap(SPACE.features)(archs)
    scale = jnp.asarray([1.0] + [16.0 ** 2] * 3 + [2.0 ** 2] * 3)
    return -jnp.sum((feats - SPACE.features(jnp.asarray(TARGET))) ** 2 / scale, axis=1)


@jax.jit
def nan_at_optimum(archs: jax.Array) -> jax.Array:
    """`synthetic`, but the optimum and every depth-2 network fail (NaN)."""
    fail = jnp.all(archs == TARGET, axis=1) | (archs[:, 0] == 2)
    return jnp.where(fail, jnp.nan, synthetic(archs))


def rounds(name: str) -> int:
    """Multi-fidelity strategies re-evaluate promoted architectures: give them twice the rounds
    (the optimum must still come within SPACE.size() distinct architectures)."""
    return 2 * ROUNDS if hasattr(base.STRATEGIES[name], "ask_with_budget") else ROUNDS


@functools.lru_cache(maxsize=None)
def compiled(name: str):
    """(strategy, jitted init, ask (n static), tell), compiled once per strategy for all tests."""
    strat = base.make(name, SPACE, capacity=rounds(name) * BATCH, **CONFIGS.get(name, {}))
    return strat, jax.jit(strat.init), jax.jit(strat.ask, static_argnums=1), jax.jit(strat.tell)


def loop_search(name: str, key: jax.Array, objective=synthetic):
    """rounds(name) rounds of ask(BATCH)/objective/tell from Python, with `search.scan`'s init key
    (the first of split(key)); the final state."""
    _, init, ask, tell = compiled(name)
    state = init(jax.random.split(key)[0])
    for _ in range(rounds(name)):
        archs, state = ask(state, BATCH)
        state = tell(state, archs, objective(archs))
    return state


KEYS = jax.random.split(jax.random.key(0), 8)


@functools.lru_cache(maxsize=None)
def vmapped(name: str):
    """The same search as one lax.scan, vmapped over the 8 KEYS; the final states."""
    strat = compiled(name)[0]
    objective = (lambda archs, key, budgets: synthetic(archs)) if name in MULTI_FIDELITY else (
        lambda archs, key: synthetic(archs))
    return jax.jit(jax.vmap(lambda key: search.scan(strat, objective, key, rounds(name), BATCH)))(KEYS)


def rows(state) -> tuple[np.ndarray, np.ndarray]:
    h = state.history
    return np.asarray(h.encodings), np.asarray(h.scores)


# --- the protocol, for every registered strategy ---------------------------------------------------
@pytest.mark.parametrize("name", with_slow(NAMES, ("nao", "rnas")))
def test_init_ask_tell_jit(name):
    _, init, ask, tell = compiled(name)
    state = init(jax.random.key(1))
    shapes = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), state)
    for _ in range(2):
        archs, state = ask(state, BATCH)
        chex.assert_shape(archs, (BATCH, *SPACE.encoding_shape))
        assert archs.dtype == jnp.int32
        assert bool(jnp.all(jax.vmap(SPACE.is_valid)(archs)))
        state = tell(state, archs, synthetic(archs))
    assert int(state.history.count) == 2 * BATCH
    # Static shapes: the state after ask/tell has the structure, shapes and dtypes of init's.
    assert jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), state) == shapes
    np.testing.assert_array_equal(state.history.scores[:8], synthetic(state.history.encodings[:8]))


@pytest.mark.parametrize("name", with_slow(NAMES, ("bo", "lanas", "lanas_bo", "nao", "rnas", "tpe")))
def test_vmap_over_keys_equals_separate_runs(name):
    """vmap(scan) over 8 keys == 8 Python loops of jitted ask/tell; the 8 searches differ."""
    batched = vmapped(name)
    histories = []
    for i, key in enumerate(KEYS):
        enc, scores = rows(loop_search(name, key))
        np.testing.assert_array_equal(np.asarray(batched.history.encodings[i]), enc)
        np.testing.assert_array_equal(np.asarray(batched.history.scores[i]), scores)
        histories.append(enc.tobytes())
    assert len(set(histories)) == 8, "different keys must give different searches"


@pytest.mark.parametrize("name", NAMES)
def test_same_key_same_history(name):
    a, b = loop_search(name, KEYS[3]), loop_search(name, jax.random.split(jax.random.key(0), 8)[3])
    data = lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x  # noqa: E731
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(data(x), data(y))


# Strategies that never ask an architecture twice while the space has unasked ones.
NON_REPEATING = {"random", "lanas", "regression_tree", "mcts_global", "mcts_sequential"}
# Median evaluations until uniform sampling without replacement from the 84 draws the one optimum:
# P(not yet after t) = (84 - t) / 84, so 42.
RANDOM_MEDIAN = 42


@pytest.mark.parametrize("name", NAMES)
def test_finds_known_optimum_sooner_than_random_search(name):
    """Every search of 8 finds the optimum; the guided ones in a median number of evaluations below
    uniform random search's exact median (BO, TPE, evolution, local search, LaNAS, MCTS on a
    unimodal objective); the non-repeating ones evaluate 84 distinct architectures."""
    batched = vmapped(name)
    assert float(synthetic(jnp.asarray(TARGET)[None])[0]) == 0.0
    first = []
    for i in range(8):
        enc, scores = np.asarray(batched.history.encodings[i]), np.asarray(batched.history.scores[i])
        hits = np.flatnonzero(scores == 0.0)
        assert len(hits), f"seed {i}: optimum not found (best {np.nanmax(scores)})"
        assert np.array_equal(enc[hits[0]], TARGET)
        first.append(hits[0] + 1)
        if name in NON_REPEATING:
            assert len(np.unique(enc, axis=0)) == len(enc) == SPACE.size(), f"seed {i} repeated"
    if name not in MULTI_FIDELITY | {"random"}:
        assert np.median(first) < RANDOM_MEDIAN, f"evaluations to the optimum: {sorted(first)}"


@pytest.mark.parametrize("name", NAMES)
def test_nan_scores_never_become_the_incumbent(name):
    for key in KEYS[:2]:
        h = loop_search(name, key, nan_at_optimum).history
        enc, score = h.best()
        scores = np.asarray(h.scores[:int(h.count)])
        assert np.isnan(scores).any()
        assert np.isfinite(float(score)) and float(score) == np.nanmax(scores)
        assert not np.array_equal(np.asarray(enc), TARGET)
        assert np.all(np.asarray(jax.vmap(SPACE.is_valid)(h.encodings)))


def test_make_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        base.make("nope", SPACE)


@pytest.mark.parametrize("name, config, message", [
    ("evolution", dict(population_size=4, sample_size=5), "sample_size <= population_size"),
    ("hyperband", dict(eta=1), "eta must be >= 2"),
    ("hyperband", dict(min_budget=5.0, max_budget=2.0), "min_budget <= max_budget"),
    ("hyperband", dict(brackets=9), "brackets must be in"),
    ("tpe", dict(gamma=1.5), "gamma must be in"),
    ("nao", dict(trade_off=1.5), "trade_off must be in"),
    ("nao", dict(train_steps=0), "train_steps must be >= 1"),
    ("nao", dict(targets="zscore"), "targets must be one of"),
    ("nao", dict(fallback="uniform"), "fallback must be one of"),
    ("nao", dict(max_step_size=0), "max_step_size must be >= 1"),
    ("rnas", dict(elite_fraction=0.0), "elite_fraction in"),
])
def test_bad_config_is_a_clear_error(name, config, message):
    with pytest.raises(ValueError, match=message):
        base.make(name, SPACE, **config)


# --- shared machinery ------------------------------------------------------------------------------
def test_draw_without_replacement_prefers_allowed_and_is_uniform():
    allowed = jnp.arange(10) % 3 == 0  # 0, 3, 6, 9
    draws = jax.vmap(lambda k: base.draw_without_replacement(k, allowed, 6))(
        jax.random.split(jax.random.key(0), 2000))
    assert all(len(set(d)) == 6 for d in np.asarray(draws).tolist())
    assert np.all(np.asarray(allowed)[np.asarray(draws[:, :4])])
    first = np.bincount(np.asarray(draws[:, 0]), minlength=10)[[0, 3, 6, 9]]
    assert first.min() > 400, first  # each of 4 allowed ~500 times first


def test_uniform_cond_runs_only_the_branch_the_whole_batch_takes():
    """Vmapped, `uniform_cond` gives `lax.cond`'s results, running one branch when the batch agrees
    (a batched `lax.cond` runs both), and both when it does not; also in a vmap of a vmap."""
    ran = []

    def branch(name, sign):
        def fn(x, y):
            jax.debug.callback(lambda: ran.append(name))
            return sign * x + y, jax.random.fold_in(jax.random.key(0), sign + 1)
        return fn

    def cond(p, x, y):
        return base.uniform_cond(p, branch("true", 1), branch("false", -1), x, y)

    batched = jax.jit(jax.vmap(jax.vmap(cond, in_axes=(0, 0, None)), in_axes=(0, 0, None)))
    single = jax.jit(cond)
    x = jnp.arange(6.0).reshape(2, 3)
    for preds, branches in [([[1, 1, 1], [1, 1, 1]], {"true"}), ([[0, 0, 0], [0, 0, 0]], {"false"}),
                            ([[1, 0, 1], [0, 0, 0]], {"true", "false"})]:
        preds = jnp.asarray(preds, bool)
        ran.clear()
        out, keys = jax.block_until_ready(batched(preds, x, jnp.float32(0.5)))
        assert set(ran) == branches
        np.testing.assert_array_equal(out, jnp.where(preds, x + 0.5, 0.5 - x))
        for i, j in np.ndindex(preds.shape):
            alone, key = single(preds[i, j], x[i, j], jnp.float32(0.5))
            assert float(alone) == float(out[i, j])
            np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(keys[i, j]))


def test_work_queue_hands_out_in_order_and_records_by_encoding():
    archs = jnp.arange(5)[:, None] * jnp.ones((1, 2), jnp.int32)
    queue = base.WorkQueue.of(archs, jnp.asarray([True, True, False, True, True]))
    fillers = jnp.full((3, 2), 9, jnp.int32)
    got, from_queue, queue = queue.take(fillers)
    np.testing.assert_array_equal(got[:, 0], [0, 1, 3])
    got, from_queue, queue = queue.take(fillers)
    np.testing.assert_array_equal(got[:, 0], [4, 9, 9])
    np.testing.assert_array_equal(from_queue, [True, False, False])
    hit, queue = queue.record(jnp.asarray([[3, 3], [9, 9], [0, 0]]), jnp.asarray([3.0, 9.0, 0.0]))
    np.testing.assert_array_equal(hit, [True, False, True])
    assert not bool(queue.complete)
    _, queue = queue.record(jnp.asarray([[1, 1], [4, 4]]), jnp.asarray([1.0, jnp.nan]))
    assert bool(queue.complete)
    np.testing.assert_array_equal(queue.ranked(), [0.0, 1.0, -np.inf, 3.0, -np.inf])


# --- each strategy's own behaviour ------------------------------------------------------------------
def test_random_never_reasks_pending_or_told_members():
    strat, _, ask, _ = compiled("random")
    state = strat.init(jax.random.key(0))
    asked = []
    for _ in range(ROUNDS):  # no tell at all: everything stays pending
        archs, state = ask(state, BATCH)
        asked.append(np.asarray(archs))
    asked = np.concatenate(asked)
    assert len(np.unique(asked, axis=0)) == SPACE.size()
    archs, _ = ask(state, BATCH)  # the space is exhausted: draws go on, still valid
    assert bool(jnp.all(jax.vmap(SPACE.is_valid)(archs)))


def test_random_samples_with_replacement_beyond_the_catalogue_limit():
    strat = base.make("random", SPACE, max_catalogue=10)
    state = strat.init(jax.random.key(0))
    assert state.taken.shape == (0,)
    archs, _ = strat.ask(state, 200)
    assert len(np.unique(np.asarray(archs), axis=0)) < 200  # repeats happen with replacement


def is_neighbour(a: np.ndarray, b: np.ndarray) -> bool:
    nbrs, mask = SPACE.neighbors(jnp.asarray(b))
    return bool(np.any(np.all(np.asarray(nbrs)[np.asarray(mask)] == a, axis=1)))


def test_evolution_ages_out_the_oldest_and_mutates_tournament_winners():
    strat, _, ask, tell = compiled("evolution")
    p = strat.population_size
    state = strat.init(jax.random.key(2))
    told = []
    for _ in range(4):
        archs, state = ask(state, BATCH)
        scores = nan_at_optimum(archs)  # depth-2 networks fail and never join
        state = tell(state, archs, scores)
        told += [(a, s) for a, s in zip(np.asarray(archs), np.asarray(scores)) if np.isfinite(s)]
    assert len(told) > p and int(state.size) == p
    # The ring buffer holds the p youngest successful ones; `head` points at the oldest.
    order = (np.arange(p) + int(state.head)) % p
    np.testing.assert_array_equal(np.asarray(state.population)[order], [a for a, _ in told[-p:]])
    np.testing.assert_array_equal(np.asarray(state.fitness)[order], [s for _, s in told[-p:]])
    children, _ = ask(state, BATCH)
    members = np.asarray(state.population)
    assert all(any(is_neighbour(c, m) for m in members) for c in np.asarray(children))


def test_local_search_evaluates_the_neighbourhood_then_moves_to_the_best():
    strat, _, ask, tell = compiled("local_search")
    state = strat.init(jax.random.key(5))
    start, state = ask(state, 1)
    state = tell(state, start, synthetic(start))
    nbrs, mask = SPACE.neighbors(start[0])
    nbrs = np.asarray(nbrs)[np.asarray(mask)]
    archs, state = ask(state, len(nbrs))
    np.testing.assert_array_equal(archs, nbrs)  # every neighbour, in order
    scores = synthetic(archs)
    state = tell(state, archs, scores)
    if float(jnp.max(scores)) > float(synthetic(start)[0]):
        np.testing.assert_array_equal(state.current, archs[int(jnp.argmax(scores))])
        assert float(state.current_score) == float(jnp.max(scores))
    else:
        assert bool(state.restart)


def test_local_search_does_not_move_sideways_on_a_plateau():
    """Neighbours scoring the same as the current architecture are no improvement: restart."""
    strat, _, ask, tell = compiled("local_search")
    state = strat.init(jax.random.key(6))
    start, state = ask(state, 1)
    state = tell(state, start, jnp.zeros(1))
    archs, state = ask(state, int(jnp.sum(SPACE.neighbors(start[0])[1])))
    state = tell(state, archs, jnp.zeros(len(archs)))
    assert bool(state.restart)
    np.testing.assert_array_equal(state.current, start[0])
    assert float(state.current_score) == 0.0


def test_local_search_restarts_at_a_local_optimum():
    """A score that is best at the start architecture: after its neighbours, the search restarts."""
    strat, _, ask, tell = compiled("local_search")
    state = strat.init(jax.random.key(5))
    start, state = ask(state, 1)
    peak = lambda a: -jnp.sum(jnp.abs(a - start[0]), axis=1).astype(jnp.float32)  # noqa: E731
    state = tell(state, start, peak(start))
    archs, state = ask(state, int(jnp.sum(SPACE.neighbors(start[0])[1])))
    state = tell(state, archs, peak(archs))
    assert bool(state.restart)
    np.testing.assert_array_equal(state.current, start[0])


def test_hyperband_schedule_is_li_et_al_table():
    strat = base.make("hyperband", SPACE, min_budget=1.0, max_budget=27.0, eta=3)
    sizes, budgets, first = strat.schedule()
    np.testing.assert_array_equal(sizes, [27, 9, 3, 1, 12, 4, 1, 6, 2, 4])
    np.testing.assert_array_equal(budgets, [1, 3, 9, 27, 3, 9, 27, 9, 27, 27])
    np.testing.assert_array_equal(first, [1, 0, 0, 0, 1, 0, 0, 1, 0, 1])
    sizes, budgets, _ = base.make("successive_halving", SPACE, max_budget=27.0).schedule()
    np.testing.assert_array_equal(sizes, [27, 9, 3, 1])


def test_successive_halving_promotes_the_best_finite_third_at_three_times_the_budget():
    # capacity 12: the second tell fills the history, and its last row (the filler) is dropped.
    strat = base.make("successive_halving", SPACE, capacity=12, max_budget=9.0)
    ask, tell = jax.jit(strat.ask_with_budget, static_argnums=1), jax.jit(strat.tell)
    state = strat.init(jax.random.key(3))
    rung0, budgets, state = ask(state, 9)
    np.testing.assert_array_equal(budgets, np.ones(9))
    scores = synthetic(rung0).at[int(jnp.argmax(synthetic(rung0)))].set(jnp.nan)  # best one fails
    state = tell(state, rung0, scores)
    rung1, budgets, state = ask(state, 4)  # 3 in the rung; the 4th slot is a filler at min budget
    np.testing.assert_array_equal(budgets, [3.0, 3.0, 3.0, 1.0])
    order = np.argsort(-np.nan_to_num(np.asarray(scores), nan=-np.inf), kind="stable")
    np.testing.assert_array_equal(rung1[:3], np.asarray(rung0)[order[:3]])
    state = tell(state, rung1, synthetic(rung1))
    assert int(state.history.count) == 12
    np.testing.assert_array_equal(state.budgets, [1.0] * 9 + [3.0] * 3)
    top, budgets, _ = ask(state, 1)
    np.testing.assert_array_equal(budgets, [9.0])
    np.testing.assert_array_equal(top[0], rung1[int(jnp.argmax(synthetic(rung1[:3])))])


def test_expected_improvement_grows_with_the_predicted_mean_and_its_uncertainty():
    mean = jnp.linspace(-3.0, 3.0, 61)
    ei = bo.expected_improvement(mean, jnp.ones_like(mean), jnp.float32(0.5))
    assert bool(jnp.all(jnp.diff(ei) > 0)) and bool(jnp.all(ei > 0))
    std = jnp.linspace(0.1, 3.0, 30)
    ei = bo.expected_improvement(jnp.zeros_like(std), std, jnp.float32(0.5))
    assert bool(jnp.all(jnp.diff(ei) > 0))
    # Far above the incumbent, EI is the improvement itself.
    np.testing.assert_allclose(bo.expected_improvement(jnp.float32(10.5), jnp.float32(0.1),
                                                       jnp.float32(0.5)), 10.0, rtol=1e-6)


@pytest.mark.parametrize("name", ["bo", "tpe"])
def test_model_based_never_proposes_evaluated_architectures(name):
    enc, _ = rows(loop_search(name, KEYS[0]))
    first = -(-compiled(name)[0].n_init // BATCH) * BATCH  # the first model-based round's row
    # While the pool (80 candidates) still holds unevaluated members of the 84: half the search.
    later = [e.tobytes() for e in enc[first:42]]
    assert len(set(later)) == len(later)
    assert not set(later) & {e.tobytes() for e in enc[:first]}


# --- other spaces ----------------------------------------------------------------------------------
# Spaces every strategy that does not refuse them (`unsupported`) must search: two jitted ask/tell
# rounds each, valid asks. LaNAS's NASNet cell space (4.36e17 cells; small here to compile fast).
OTHER_SPACES = {"nasnet": NASNetSpace(num_nodes=3)}
# Strategies whose models take a minute to compile on a loaded 2-core machine: the slow suite.
HEAVY = ("lanas", "lanas_bo", "nao", "regression_tree", "rnas")


@pytest.mark.parametrize("space_name", sorted(OTHER_SPACES))
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in NAMES])
def test_searches_other_spaces(name, space_name):
    space = OTHER_SPACES[space_name]
    cls = base.STRATEGIES[name]
    if cls.unsupported(space) is not None:
        pytest.skip(cls.unsupported(space))
    strat = base.make(name, space, capacity=2 * BATCH, **CONFIGS.get(name, {}))
    score = jax.jit(lambda a: -jnp.sum(jax.vmap(space.features)(a), axis=1))
    state = jax.jit(strat.init)(jax.random.key(0))
    ask, tell = jax.jit(strat.ask, static_argnums=1), jax.jit(strat.tell)
    for _ in range(2):
        archs, state = ask(state, BATCH)
        assert bool(jnp.all(jax.vmap(space.is_valid)(archs)))
        state = tell(state, archs, score(archs))
