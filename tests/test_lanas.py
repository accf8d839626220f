"""LaNAS and the regression tree: the ridge fit, UCB selection, and that every asked architecture lies
in the selected region (catalogue and rejection sampling). The arithmetic is tested in
test_numerics.py, the tree helpers in test_tree.py.

The objective is a deterministic synthetic score on LaNAS's motivating space (1,364 ConvNets) with a
unique optimum: minus a scaled squared distance between `space.features` and the optimum's.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax import search
from nasjax.search import base, lanas, tree
from nasjax.search.numerics import exact_sums, project
from nasjax.spaces import ConvNetSpace, DARTSSpace, NASBench101Space

SPACE = ConvNetSpace.motivating()
TARGET = SPACE.encode([(64, 5), (32, 3), (64, 5), (64, 3)])
SIZE = SPACE.size()
BATCH = 10


def synthetic(archs: jax.Array) -> jax.Array:
    """float32 (n,): 0 at TARGET, negative elsewhere."""
    feats = jax.vmap(SPACE.features)(archs)
    scale = jnp.asarray([1.0] + [32.0 ** 2] * 5 + [2.0 ** 2] * 5)
    return -jnp.sum((feats - SPACE.features(jnp.asarray(TARGET))) ** 2 / scale, axis=1)


def strategy(name: str = "lanas", **config) -> lanas.LaNAS:
    return base.make(name, SPACE, **{"capacity": SIZE, **config})


def scan_search(strat, key, rounds: int):
    """`rounds` rounds of ask(BATCH)/tell -> (final state, per round: (archs (BATCH, *enc), the
    selected node, its path's constraints, each catalogue member's leaf, members taken before the
    ask))."""

    def record(before, archs, state):
        leaves = strat.leaves(state, jnp.asarray(base.catalogue(SPACE)))
        return archs, state.selected, strat.constraints(state), leaves, before.taken

    return search.scan(strat, lambda archs, _: synthetic(archs), key, rounds, BATCH, record=record)


FULL = -(-SIZE // BATCH)  # rounds that ask the whole space


@functools.lru_cache(maxsize=None)
def searcher(name: str = "lanas", rounds: int = FULL, batched: bool = False, **config):
    """`scan_search` jitted (vmapped over keys if `batched`), compiled once per configuration and
    shared by the tests."""
    one = functools.partial(scan_search, strategy(name, **config), rounds=rounds)
    return jax.jit(jax.vmap(one) if batched else one)


@functools.lru_cache(maxsize=None)
def run(name: str = "lanas", rounds: int = FULL, **config):
    return searcher(name, rounds, **config)(jax.random.key(3))


REJECTION = dict(rounds=8, max_catalogue=0, n_candidates=512)  # rejection sampling, same space


def np_features(archs) -> np.ndarray:
    return np.asarray(jax.vmap(SPACE.features)(jnp.asarray(archs)), np.float64)


def satisfied(feats: np.ndarray, w, b, left) -> np.ndarray:
    """bool (M, D): constraint d holds for row m (float64; 1e-4 slack for float32 rounding at
    the boundary)."""
    s = feats @ np.asarray(w, np.float64).T - np.asarray(b, np.float64)
    return np.where(np.asarray(left), s >= -1e-4, s < 1e-4)


# --- building blocks -------------------------------------------------------------------------------
def ridge_fit(x, y, mask, ridge):
    """The ridge fit of the rows of x (M, F), y (M,) where mask holds, through the fit's path."""
    m = lanas.moments(jnp.asarray(x).T, jnp.asarray(y), jnp.asarray(mask))
    return lanas.ridge_from_moments(exact_sums(jnp.ones((1, len(y)), bool), m)[0],
                                    x.shape[1], ridge)


def test_ridge_fit_equals_lstsq_on_the_masked_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.7 + 0.1 * rng.normal(size=30)).astype(np.float32)
    mask = rng.random(30) < 0.7
    w, x_mean, y_mean, count = ridge_fit(x, y, mask, 1e-7)
    design = np.concatenate([x[mask], np.ones((mask.sum(), 1))], axis=1).astype(np.float64)
    coef = np.linalg.lstsq(design, y[mask].astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(w, coef[:4], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y_mean - x_mean @ w, coef[4], rtol=1e-4, atol=1e-4)
    assert int(count) == mask.sum()
    # An empty region has no slope.
    w0, *_ = ridge_fit(x, y, np.zeros(30, bool), 1e-3)
    np.testing.assert_array_equal(w0, np.zeros(4))


def test_select_takes_the_unvisited_child_first():
    strat = strategy(height=3, cp_scale=0.0, max_catalogue=0)  # rejection mode: no region closed
    state = strat.init(jax.random.key(0))
    # Root visited 5 times, all in its left child (excellent value); the right child never.
    state = state.replace(visits=jnp.asarray([5, 5, 0, 3, 2, 0, 0]),
                          scored=jnp.asarray([5, 5, 0, 3, 2, 0, 0]),
                          total=jnp.asarray([50.0, 50.0, 0.0, 30.0, 20.0, 0.0, 0.0]))
    # Right child unvisited -> right; its children are both unvisited -> ties go left.
    assert int(strat.select(state)) == 5
    visited = state.replace(visits=state.visits.at[2].set(1).at[5].set(1),
                            scored=state.scored.at[2].set(1).at[5].set(1),
                            total=state.total.at[2].set(-1.0).at[5].set(-1.0))
    # Both children visited, no exploration: the higher mean (left, 10 > -1), then leaf 3 (10 vs 10:
    # tie -> left).
    assert int(strat.select(visited)) == 3


# --- the search -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lanas", "regression_tree"])
def test_catalogue_asks_lie_in_the_selected_region(name):
    final, (archs, selected, cons, member_leaf, taken) = run(name, **({} if name == "lanas" else
                                                                       dict(rounds=12)))
    height = strategy(name).height
    features = np_features(base.catalogue(SPACE))
    asked_all = np.asarray(jax.vmap(SPACE.index)(archs.reshape(-1, *SPACE.encoding_shape)))
    fitted = full = greedy = 0
    for r in range(archs.shape[0]):
        node = int(selected[r])
        if node == 0 or (~np.asarray(taken[r])).sum() < BATCH:  # not fitted yet; the last round
            continue
        fitted += 1
        assert tree.node_depth(node) == height - 1, "after the first fit a leaf is selected"
        leaf, untaken = np.asarray(member_leaf[r]), ~np.asarray(taken[r])
        asked = asked_all[r * BATCH:(r + 1) * BATCH]
        assert untaken[asked].all(), "asks are never repeated"
        # The asked architectures are the best available by leading path constraints satisfied:
        # all in the region when it holds enough untaken members, else the nearest region's.
        depth = np_common_depth(leaf, node, height)
        np.testing.assert_array_equal(np.sort(depth[asked]), np.sort(depth[untaken])[-BATCH:])
        in_region = (leaf == node) & untaken
        assert in_region.any(), "a region with untaken members is selected"
        full += int(in_region[asked].all())
        greedy += int(node == leaf[untaken].min())
        # The reported path constraints agree with the routing (float64, up to rounding).
        w, b, left = (c[r] for c in cons)
        assert satisfied(features[leaf == node], w, b, left).all()
    assert fitted >= 8 and full >= 1
    # The regression tree always takes the leftmost leaf with untaken members; UCB explores.
    if name == "regression_tree":
        assert greedy == fitted
    else:
        assert greedy < fitted


def np_common_depth(leaves: np.ndarray, node: int, height: int) -> np.ndarray:
    """How many leading constraints of the path to leaf `node` each leaf's members satisfy: the
    depth of their deepest common ancestor (heap order, computed independently of `lanas`)."""
    ancestor = lambda n, d: ((n + 1) >> (height - 1 - d)) - 1
    depth = np.zeros(len(leaves), int)
    for d in range(1, height):
        depth += np.all([ancestor(leaves, k) == ancestor(node, k) for k in range(1, d + 1)], axis=0)
    return depth


def test_rejection_asks_satisfy_all_path_constraints():
    # max_catalogue=0 forces rejection sampling on the same space.
    final, (archs, selected, cons, *_) = run("lanas", **REJECTION)
    assert final.taken.shape == (0,)
    told = [tuple(a.ravel()) for a in np.asarray(final.history.encodings)]
    checked = 0
    for r in range(archs.shape[0]):
        if int(selected[r]) == 0:
            continue
        w, b, left = (c[r] for c in cons)
        region = satisfied(np_features(base.catalogue(SPACE)), w, b, left).all(axis=1)
        if region.mean() < 0.01:  # tiny regions may legitimately need the fallback
            continue
        checked += 1
        asked = [tuple(a.ravel()) for a in np.asarray(archs[r])]
        before = set(told[:r * len(asked)])
        # Fresh candidates rank above seen ones (no budget spent twice), so an ask leaves the region
        # only for an architecture neither told before nor repeated in its batch.
        for a, inside in zip(asked, satisfied(np_features(archs[r]), w, b, left).all(axis=1)):
            assert inside or (a not in before and asked.count(a) == 1)
        assert bool(jnp.all(jax.vmap(SPACE.is_valid)(archs[r])))
    assert checked >= 3  # of 8 rounds; the rest sample the root (before the first fit) or a tiny region


def test_rejection_fallback_drops_the_deepest_constraints():
    """A hand-made tree of height 3 (all weights 0) whose root sends everything left and whose node 1
    sends everything right: the leftmost leaf 3 is empty, so the regression tree's asks come from
    leaf 4, satisfying the first of the path's two constraints."""
    strat = strategy("regression_tree", height=3, max_catalogue=0, max_attempts=2, n_candidates=16)
    state = strat.init(jax.random.key(0))
    # Node j sends z left iff z . 0 >= cuts[j]: yes at the root, no at node 1.
    state = state.replace(cuts=jnp.asarray([-1.0, 1.0, 0.0]), fitted_at=jnp.int32(0))
    archs, state = jax.jit(strat.ask, static_argnums=1)(state, 6)
    assert int(state.selected) == 3
    assert bool(jnp.all(jax.vmap(SPACE.is_valid)(archs)))
    w, b, left = strat.constraints(state)
    np.testing.assert_array_equal(satisfied(np_features(archs), w, b, left),
                                  np.tile([[True, False]], (6, 1)))


def test_catalogue_fallback_takes_the_region_then_its_nearest_ancestor():
    """A hand-made tree of height 3: the root sends everything left, node 1 sends the two members
    of largest projection on a random direction left (leaf 3), the rest right (leaf 4): ask(6)
    returns both, then 4 from leaf 4 (the region of node 1, one constraint dropped); closed
    regions are never selected."""
    strat = strategy("regression_tree", height=3)
    direction = jax.random.normal(jax.random.key(1), (SPACE.num_features,))
    proj = np.asarray(project(jnp.asarray(lanas.catalogue_features(SPACE).T), direction))
    top = np.argsort(proj)[-2:]
    assert np.sort(proj)[-3] < proj[top].min(), "distinct projections"
    state = strat.init(jax.random.key(0)).replace(
        weights=jnp.zeros((3, SPACE.num_features)).at[1].set(direction),
        cuts=jnp.asarray([-1.0, proj[top].min(), 0.0]), fitted_at=jnp.int32(0))
    archs, state = jax.jit(strat.ask, static_argnums=1)(state, 6)
    assert int(state.selected) == 3
    idx = np.asarray(jax.vmap(SPACE.index)(archs))
    assert set(top.tolist()) <= set(idx.tolist()) and len(set(idx.tolist())) == 6
    # Leaf 3 is now exhausted: the next ask selects leaf 4 and stays in it.
    archs, state = strat.ask(state, 6)
    assert int(state.selected) == 4
    np.testing.assert_array_equal(strat.leaves(state, archs), np.full(6, 4))


def test_catalogue_mode_never_reasks_and_finds_the_optimum():
    final, (archs, *_) = run("lanas")
    asked = np.asarray(archs).reshape(-1, SPACE.encoding_shape[0])
    assert len(np.unique(asked[:SIZE], axis=0)) == SIZE, "no member asked twice before exhaustion"
    scores = np.asarray(final.history.scores)
    assert scores.max() == 0.0 and np.isfinite(scores).all()
    first = int(np.argmax(scores == 0.0))
    assert first < SIZE // 2, f"LaNAS took {first} samples: no better than random search's mean"


def assert_same_bits(batched, i, alone):
    """Search state `i` of a vmapped run equals a separate run's, bit for bit (keys by their data)."""
    data = lambda a: jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a
    chex.assert_trees_all_equal(jax.tree_util.tree_map(lambda a: data(a[i]), batched),
                                jax.tree_util.tree_map(data, alone))


@pytest.mark.slow
@pytest.mark.parametrize("config", [{}, REJECTION])
def test_vmap_over_keys_equals_separate_runs(config):
    keys = jax.random.split(jax.random.key(7), 8)
    batched = searcher("lanas", batched=True, **config)(keys)[0]
    for i, key in enumerate(keys):
        assert_same_bits(batched, i, searcher("lanas", **config)(key)[0])  # fitted parameters too
    assert len({np.asarray(e).tobytes() for e in batched.history.encodings}) == 8


TOLD = 400  # histories of the bit-for-bit test


@pytest.fixture(scope="module")
def many_histories():
    """32 random histories of TOLD members (some failed), each told at once (one fit), then one more
    round of ask/tell (a back-propagation: n_select=30): vmapped, and each run separately.
    -> (strategy, [vmapped told, vmapped after the round], per history: the same run separately)."""
    strat = strategy(capacity=TOLD + BATCH, n_select=30)
    k_members, k_noise, k_state = jax.random.split(jax.random.key(5), 3)
    idx = jax.vmap(lambda k: jax.random.permutation(k, SIZE)[:TOLD])(jax.random.split(k_members, 32))
    archs = jnp.asarray(base.catalogue(SPACE))[idx]
    scores = jax.vmap(synthetic)(archs) + 0.3 * jax.random.normal(k_noise, idx.shape)
    scores = scores.at[:, ::37].set(jnp.nan)  # some failures

    def told_and_round(key, archs, scores):
        told = strat.tell(strat.init(key), archs, scores)
        asked, state = strat.ask(told, BATCH)
        return told, strat.tell(state, asked, synthetic(asked))

    keys = jax.random.split(k_state, 32)
    batched = jax.jit(jax.vmap(told_and_round))(keys, archs, scores)
    single = jax.jit(told_and_round)
    return strat, batched, [single(keys[i], archs[i], scores[i]) for i in range(32)]


def test_vmapped_fits_and_asks_equal_separate_ones_bit_for_bit(many_histories):
    """The numerics decisions hang on (fit, projections, UCB) give the same bits batched and
    unbatched on many histories: a last-bit difference (an FMA in one program, a division turned
    into a reciprocal multiply in the other) flips a sample near a split sooner or later. (Before
    `mul` and `exact_sums`, a vmapped 64 x 600 search diverged at sample 540 from one catalogue
    member routed across a split by a last-bit difference in its projection.)"""
    _, batched, separate = many_histories
    for i, alone in enumerate(separate):
        for b, a in zip(batched, alone):
            assert_same_bits(b, i, a)


def test_statistics_match_a_recount_of_the_history(many_histories):
    """Between refits, `tell` increments counts along the new samples' paths; the result equals
    routing the whole history through the current tree."""
    strat, _, separate = many_histories
    for told, final in separate[:4]:
        h = final.history
        assert int(final.fitted_at) == TOLD and int(h.count) == TOLD + BATCH
        visits, scored, total = tree.node_stats(strat.leaves(final, h.encodings), h.scores,
                                                 h.filled, strat.height)
        np.testing.assert_array_equal(final.visits, visits)
        np.testing.assert_array_equal(final.scored, scored)
        np.testing.assert_allclose(final.total, total, rtol=1e-5)
        assert int(final.visits[0]) == TOLD + BATCH and int(final.scored[0]) < TOLD + BATCH
        # The fitted tree splits the root's samples into a better left and a worse right half.
        value = np.asarray(final.total) / np.maximum(np.asarray(final.scored), 1)
        assert value[1] > value[2]


def test_failed_evaluations_are_visits_but_not_values(many_histories):
    _, _, separate = many_histories
    for told, _ in separate[:4]:  # every 37th of the TOLD scores is NaN
        scores = np.asarray(told.history.scores[:TOLD])
        failed = int(np.isnan(scores).sum())
        assert failed == -(-TOLD // 37)
        assert int(told.visits[0]) == TOLD and int(told.scored[0]) == TOLD - failed
        np.testing.assert_allclose(told.total[0], np.nansum(scores), rtol=1e-5)
        assert np.isfinite(np.asarray(told.weights)).all() and np.isfinite(told.cuts).all()
        # Visits of the leaves add up to the root's; the scored ones exclude the failures.
        leaves = slice(strategy().num_internal, None)
        assert int(told.visits[leaves].sum()) == TOLD
        assert int(told.scored[leaves].sum()) == TOLD - failed


@pytest.mark.parametrize("config, message", [
    (dict(height=1), "height must be >= 2"),
    (dict(n_select=0), "n_select must be >= 1"),
    (dict(cp=-1.0), "cp and cp_scale must be >= 0"),
    (dict(ridge=0.0), "ridge must be > 0"),
    (dict(cp_spread="range"), "cp_spread must be one of"),
])
def test_bad_config_is_a_clear_error(config, message):
    with pytest.raises(ValueError, match=message):
        strategy(**config)


def test_asking_more_than_available_is_a_clear_error():
    with pytest.raises(ValueError, match="exceeds n_candidates"):
        strat = strategy(max_catalogue=0, n_candidates=4)
        strat.ask(strat.init(jax.random.key(0)), 5)


# --- exploration that does not depend on the scores' scale ------------------------------------------
@functools.lru_cache(maxsize=None)
def rescaled_asks(spread: str, scale: float, told: int = 200, histories: int = 16):
    """Jitted x -> the archs asked after one fit on each of `histories` random histories of `told`
    members scored by the table x float32 (SIZE,), with the tree's statistics recomputed from
    scores x and from 100 x + 3 (same regions, same key: only the UCB selection can differ)
    -> int32 (2, histories, BATCH, *enc)."""
    strat = strategy(capacity=told, cp_spread=spread, cp_scale=scale)

    def asks(key, x):
        k_members, k_ask = jax.random.split(key)
        archs = jnp.asarray(base.catalogue(SPACE))[jax.random.permutation(k_members, SIZE)[:told]]
        state = strat.tell(strat.init(key), archs, x[jax.vmap(SPACE.index)(archs)])  # one fit
        out = []
        for scores in (x, 100.0 * x + 3.0):
            h = state.history.replace(scores=scores[jax.vmap(SPACE.index)(state.history.encodings)])
            visits, scored, total = tree.node_stats(strat.leaves(state, h.encodings), h.scores,
                                                    h.filled, strat.height)
            s = state.replace(key=k_ask, history=h, visits=visits, scored=scored, total=total)
            out.append(strat.ask(s, BATCH)[0])
        return jnp.stack(out)

    keys = jax.random.split(jax.random.key(11), histories)
    return jax.jit(lambda x: jnp.swapaxes(jax.vmap(asks, (0, None))(keys, x), 0, 1))


@pytest.mark.parametrize("low, high", [(0.3, 0.95), (0.0, 0.005)])
def test_std_exploration_is_invariant_to_an_affine_rescaling_of_the_scores(low, high):
    """Same proposals for scores x and 100 x + 3 (a tabular objective, random accuracies in
    [low, high]) given the same tree. The paper's Cp (0.1 x max score) is not invariant: on small
    scores the +3 dominates its bonus. (Whole searches can still part: the ridge fits round
    differently, and a member exactly on a split's boundary in exact arithmetic, e.g. the only
    sample of a node, may go either way.)"""
    x = jax.random.uniform(jax.random.key(12), (SIZE,), minval=low, maxval=high)
    asked = np.asarray(rescaled_asks("std", 0.1)(x))
    np.testing.assert_array_equal(asked[0], asked[1])
    if low == 0.0:
        paper = np.asarray(rescaled_asks("max", 0.1)(x))
        assert not np.array_equal(paper[0], paper[1])


# --- no duplicate proposals in rejection mode -------------------------------------------------------
@pytest.mark.parametrize("space", [
    NASBench101Space(num_vertices=4),  # a few hundred encodings; NB-101 is never enumerated
    pytest.param(DARTSSpace(num_nodes=1, ops=("skip_connect", "max_pool_3x3", "avg_pool_3x3")),  # 81 cells
                 marks=pytest.mark.slow),
], ids=["nb101", "darts"])
def test_rejection_mode_never_proposes_a_told_or_repeated_architecture(space):
    rounds = 6
    strat = base.make("lanas", space, capacity=rounds * BATCH, max_catalogue=0, height=3,
                      n_candidates=64)
    assert not strat.from_catalogue
    w = jax.random.normal(jax.random.key(2), (space.num_features,))

    def one(key):
        return search.scan(strat, lambda archs, _: jax.vmap(space.features)(archs) @ w, key, rounds, BATCH)

    told = np.asarray(jax.jit(one)(jax.random.key(0)).history.encodings).reshape(rounds * BATCH, -1)
    assert len(np.unique(told, axis=0)) == rounds * BATCH
    # The test has teeth: as many uniform samples of the space do repeat.
    uniform = np.asarray(space.sample(jax.random.key(1), rounds * BATCH)).reshape(rounds * BATCH, -1)
    assert len(np.unique(uniform, axis=0)) < rounds * BATCH


@pytest.mark.slow
def test_a_sweep_over_cp_is_one_compilation_and_equals_separate_strategies():
    """vmap over 8 `cp` values through `state.hparams`: one trace, one compiled program, and each
    member is bit for bit the search of a strategy constructed with that cp."""
    strat = strategy(n_init=10, cp_scale=0.0)
    cps = jnp.asarray([0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0], jnp.float32)
    traces = []

    def sweep(cp):
        traces.append(cp)  # runs once per trace
        hparams = {**strat.default_hparams(), "cp": cp}
        return search.scan(strat, lambda archs, _: synthetic(archs), jax.random.key(4), 12, BATCH, hparams)

    swept = jax.jit(jax.vmap(sweep))
    final = swept(cps)
    swept(cps[::-1])  # other values, same shapes: no new trace or compilation
    assert len(traces) == 1 and swept._cache_size() == 1
    told = np.asarray(final.history.encodings)
    assert len({row.tobytes() for row in told}) >= 3, "cp must change the searches"
    for i in (0, 5, 7):
        alone = jax.jit(lambda key, c=float(cps[i]): search.scan(
            strategy(n_init=10, cp_scale=0.0, cp=c), lambda archs, _: synthetic(archs), key, 12, BATCH))(
            jax.random.key(4))
        np.testing.assert_array_equal(np.asarray(alone.history.encodings), told[i])


def test_rank_split_targets_are_the_scores_order_and_ignore_monotone_changes():
    """`split_scores="rank"`: the targets are the successful scores' ranks in [0, 1] (lowest 0,
    highest 1, in the scores' order); the fitted tree is bit for bit the same after an increasing
    transform of the scores, which changes the raw fit."""
    archs = jnp.asarray(base.catalogue(SPACE))[::9][:60]
    scores = synthetic(archs).at[7].set(jnp.nan)
    history = base.History.empty(64, SPACE.encoding_shape).add(archs, scores)
    y = np.asarray(lanas.split_targets(history, "rank"))
    ok = np.isfinite(np.asarray(scores))
    order = np.argsort(np.asarray(scores)[ok], kind="stable")
    np.testing.assert_allclose(y[:60][ok][order], np.arange(ok.sum()) / (ok.sum() - 1), rtol=1e-6, atol=0)
    warped = base.History.empty(64, SPACE.encoding_shape).add(archs, jnp.exp(scores / 50.0) ** 3 - 7.0)
    fit = jax.jit(lambda strat, h: strat.fit(h, jnp.float32(1e-3)), static_argnums=0)
    ranked, raw = strategy(split_scores="rank"), strategy()
    for a, b in zip(fit(ranked, history), fit(ranked, warped)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(fit(raw, history)[0], fit(raw, warped)[0])
    with pytest.raises(ValueError, match="split_scores must be one of"):
        strategy(split_scores="quantile")


def told(archs: jax.Array, scores: jax.Array, capacity: int) -> base.History:
    return base.History.empty(capacity, SPACE.encoding_shape).add(archs, scores)


def test_a_source_joins_the_fit_as_told_samples_would_and_an_empty_one_changes_nothing():
    """Transfer's mechanism (`LaNAS.fit` with a source): fitting a history plus a source gives the
    tree of one history holding both (raw targets; up to rounding, which the deep, few-sample
    nodes' ridge fits amplify: the root's split and 97 % of the routes agree); a source weighing 2
    per sample fits as that source told twice; a source without a finite score gives the
    source-free fit bit for bit."""
    strat = strategy(split_scores="raw")
    members = jnp.asarray(base.catalogue(SPACE))[:400]
    scores = synthetic(members)
    fit = jax.jit(lambda h, src, w: strat.fit(h, jnp.float32(1e-3), src, w))
    fit_alone = jax.jit(lambda h: strat.fit(h, jnp.float32(1e-3)))
    history = told(members[:200], scores[:200], 400)  # every history and source below: 400 rows, two programs
    source = told(members[200:], scores[200:], 400)
    both = fit(history, source, 1.0)
    one = fit_alone(told(members, scores, 400))
    root = np.asarray(one[0][0])
    np.testing.assert_allclose(np.asarray(both[0][0]), root, atol=1e-5 * np.abs(root).max())
    assert np.mean(np.asarray(both[2][:200]) == np.asarray(one[2][:200])) >= 0.97
    twice = fit(history, told(jnp.concatenate([members[200:]] * 2), jnp.concatenate([scores[200:]] * 2), 400), 1.0)
    weighted = fit(history, source, 2.0)
    root = np.asarray(twice[0][0])
    np.testing.assert_allclose(np.asarray(weighted[0][0]), root, atol=1e-5 * np.abs(root).max())
    assert not np.allclose(np.asarray(weighted[0][0]), np.asarray(both[0][0]), atol=1e-3 * np.abs(root).max())
    empty = fit(history, told(members[200:], jnp.full((200,), jnp.nan, jnp.float32), 400), 1.0)
    chex.assert_trees_all_equal(empty, fit_alone(history))
    state = strat.transfer_init(jax.random.key(0), source_archs=members[:8], source_scores=scores[:8],
                                source_count=4, source_mass=10.0)
    assert float(state.source_weight) == 2.5 and int(state.source.count) == 4
    state = strat.transfer_init(jax.random.key(0), source_archs=members[:8], source_scores=scores[:8])
    assert float(state.source_weight) == strat.n_init / 8  # by default the source weighs n_init samples


@functools.partial(jax.jit, static_argnames=("exclude",))
def transfer_search(source_archs, source_scores, key, exclude):
    """4 rounds of LaNAS (the default configuration) started from a source (`transfer_init`)."""
    strat = strategy()
    init = functools.partial(strat.transfer_init, source_archs=source_archs, source_scores=source_scores,
                             exclude=exclude)
    return search.scan(strat, lambda archs, _: synthetic(archs), key, 4, BATCH, init=init)


def test_transfer_with_an_empty_source_is_a_fresh_search_bit_for_bit():
    """A source without a finite score joins every refit (3 of them) and changes nothing."""
    source = jnp.asarray(base.catalogue(SPACE))[:300]
    key = jax.random.key(3)
    fresh = jax.jit(lambda k: search.scan(strategy(), lambda a, _: synthetic(a), k, 4, BATCH))(key)
    empty = transfer_search(source, jnp.full((300,), jnp.nan), key, exclude=False)
    chex.assert_trees_all_equal(fresh.history, empty.history)
    chex.assert_trees_all_equal((fresh.weights, fresh.cuts, fresh.total), (empty.weights, empty.cuts, empty.total))


def test_transferred_actions_steer_the_first_asks_and_exclusion_never_asks_the_source():
    """A source holding the scores of a random third of the space: the first ask already comes
    from the source's best region (far better than the average member; not so without the
    source's scores), and with `exclude` no source member is ever asked."""
    members = jnp.asarray(base.catalogue(SPACE))
    idx = jax.random.permutation(jax.random.key(0), SIZE)[:SIZE // 3]
    source, scores = members[idx], synthetic(members[idx])
    for source_scores in (scores, jnp.full(scores.shape, jnp.nan, scores.dtype)):
        final = transfer_search(source, source_scores, jax.random.key(1), exclude=True)
        asked = final.history.encodings[:final.history.count]
        assert asked.shape[0] == 4 * BATCH
        assert not np.isin(np.asarray(jax.vmap(SPACE.index)(asked)), np.asarray(idx)).any()
        steered = float(jnp.mean(synthetic(asked[:BATCH]))) > float(jnp.mean(synthetic(members))) + 4.0
        assert steered == bool(jnp.all(jnp.isfinite(source_scores)))


def test_exclusion_needs_a_catalogue():
    strat = strategy(max_catalogue=10)
    with pytest.raises(ValueError, match="exclude needs an enumerable space"):
        strat.transfer_init(jax.random.key(0), source_archs=jnp.asarray(base.catalogue(SPACE))[:4],
                            source_scores=jnp.zeros(4), exclude=True)
