"""nasjax.metrics on cases checkable by hand, and against brute force / scipy."""

import dataclasses
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from nasjax import metrics
from nasjax.spaces import NASBench201Space, Space


@dataclasses.dataclass(frozen=True)
class ChainSpace(Space):
    """Toy space: architectures 0..n-1 on a line (ring=True: a cycle); neighbours are i - 1 and i + 1."""

    n: int = 6
    ring: bool = False

    encoding_shape = (1,)
    num_features = 1

    def _sample(self, key, n):
        return jax.random.randint(key, (n, 1), 0, self.n)

    def is_valid(self, enc):
        return (enc[0] >= 0) & (enc[0] < self.n)

    def neighbors(self, enc):
        rows = jnp.stack([enc - 1, enc + 1])
        if self.ring:
            return rows % self.n, jnp.ones(2, bool)
        return rows, jax.vmap(self.is_valid)(rows)

    def features(self, enc):
        return enc.astype(jnp.float32)

    def validation_errors(self, enc):
        return [] if 0 <= enc[0] < self.n else [f"{enc[0]} outside [0, {self.n})"]

    def describe(self, enc):
        return f"node {int(enc[0])}"

    def size(self):
        return self.n

    def enumerate(self):
        return np.arange(self.n, dtype=np.int32)[:, None]

    def index(self, enc):
        return enc[0].astype(jnp.int32)


# --- relative improvement, curves ---------------------------------------------------------------
def test_relative_improvement_arithmetic():
    np.testing.assert_allclose(metrics.relative_improvement(110.0, 100.0), 10.0)
    np.testing.assert_allclose(metrics.relative_improvement(45.0, 50.0), -10.0)
    np.testing.assert_allclose(metrics.relative_improvement(jnp.array([80.0, 88.0]), 80.0), [0.0, 10.0], rtol=1e-6)


def test_best_so_far_skips_failures():
    curve = metrics.best_so_far(jnp.array([[np.nan, 1.0, 3.0, 2.0, np.nan, 5.0],
                                           [4.0, 1.0, np.nan, 6.0, 2.0, 0.0]]))
    np.testing.assert_array_equal(curve, [[np.nan, 1, 3, 3, 3, 5], [4, 4, 4, 6, 6, 6]])


@pytest.mark.parametrize("scores, optimum, atol, expected", [
    ([1.0, 3.0, 2.0, 5.0, 4.0], 5.0, 0.0, 4.0),
    ([5.0, 3.0], 5.0, 0.0, 1.0),
    ([1.0, 3.0, 2.0], 5.0, 0.0, np.inf),
    ([1.0, np.nan, 4.95, 5.0], 5.0, 0.1, 3.0),
])
def test_samples_to_optimum(scores, optimum, atol, expected):
    assert float(metrics.samples_to_optimum(jnp.array(scores), optimum, atol)) == expected
    # The best-so-far curve reaches the optimum at the same evaluation.
    assert float(metrics.samples_to_optimum(metrics.best_so_far(jnp.array(scores)), optimum, atol)) == expected


def test_samples_to_optimum_batches_over_runs():
    runs = jnp.array([[0.0, 1.0, 2.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(jax.jit(metrics.samples_to_optimum)(runs, 2.0), [3.0, 1.0, np.inf])


def test_quantile_band_across_runs():
    curves = jnp.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, np.nan]])
    band = metrics.quantile_band(curves)
    chex.assert_shape(band, (3, 2))
    np.testing.assert_allclose(band, [[2.0, 17.5], [3.0, 25.0], [4.0, 32.5]])


# --- Kendall tau ---------------------------------------------------------------------------------
def test_kendall_tau_extremes():
    x = np.arange(10.0)
    assert float(metrics.kendall_tau(x, 2 * x + 1)) == pytest.approx(1.0)
    assert float(metrics.kendall_tau(x, -x)) == pytest.approx(-1.0)
    # 3 pairs: (1,2) concordant, (1,3) concordant, (2,3) discordant -> (2 - 1) / 3.
    assert float(metrics.kendall_tau([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])) == pytest.approx(1 / 3)
    assert np.isnan(float(metrics.kendall_tau(x, np.where(x == 3, np.nan, x))))
    assert np.isnan(metrics.kendall_tau(x, np.ones(10)))  # constant: no ranking
    with pytest.raises(ValueError, match="same length"):
        metrics.kendall_tau(x, x[:9])


@pytest.mark.parametrize("n, levels", [(3, 2), (300, 6), (300, 1000), (2_000, 40)])
def test_kendall_tau_b_matches_scipy_with_ties(n, levels):
    rng = np.random.default_rng(n + levels)
    x, y = rng.integers(0, levels, n).astype(np.float32), rng.integers(0, 4, n).astype(np.float32)
    y = np.where(rng.random(n) < 0.5, x, y)
    assert metrics.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_kendall_tau_counts_pairs_exactly_beyond_int32():
    """n = 46,500: 1.08e9 pairs, past int32 (a 32-bit count gave -0.99 here)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=46_500)
    y = x + 0.01 * rng.normal(size=x.shape)
    y[::7] = np.round(y[::7], 1)  # and ties
    tau = metrics.kendall_tau(x, y)
    assert tau == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert tau > 0.98


def test_kendall_tau_keeps_float64_values_apart():
    """Values a float32 cast would merge (1 + k 1e-9) stay distinct: a perfect ranking, no ties."""
    x = 1.0 + 1e-9 * np.arange(100)
    assert metrics.kendall_tau(x, x) == 1.0
    assert metrics.kendall_tau(x, -x) == -1.0


# --- local optima --------------------------------------------------------------------------------
@pytest.mark.parametrize("scores, ring, expected", [
    ([1, 3, 2, 5, 4, 4], False, [0, 1, 0, 1, 0, 1]),  # peaks at 1 and 3; the end 5 ties its neighbour 4
    ([1, 0, -1, -2, -3, 2], False, [1, 0, 0, 0, 0, 1]),  # both ends
    ([1, 0, -1, -2, -3, 2], True, [0, 0, 0, 0, 0, 1]),  # on a ring node 0 sees node 5
    ([1, 2, 3, 4, 5, 6], False, [0, 0, 0, 0, 0, 1]),  # monotone: one optimum
    ([2, 2, 2, 2, 2, 2], False, [1, 1, 1, 1, 1, 1]),  # a plateau: nothing strictly better anywhere
    ([1, np.nan, 0, 2, np.nan, 1], False, [1, 0, 0, 1, 0, 1]),  # NaN members never count; NaN neighbours ignored
])
def test_local_optima_on_chains(scores, ring, expected):
    space = ChainSpace(n=len(scores), ring=ring)
    found = metrics.local_optima(space, jnp.array(scores, jnp.float32))
    np.testing.assert_array_equal(found, np.array(expected, bool))
    assert metrics.count_local_optima(space, jnp.array(scores, jnp.float32)) == sum(expected)


def test_local_optima_on_nb201_by_construction():
    space = NASBench201Space()
    members = space.enumerate()
    target = members[1234]
    # Score = number of edges agreeing with a target cell: one step can always add one -> unimodal.
    unimodal = (members == target).sum(axis=1).astype(np.float32)
    found = np.asarray(metrics.local_optima(space, unimodal))
    assert found.sum() == 1 and found[1234]
    assert metrics.count_local_optima(space, np.zeros(space.size(), np.float32)) == space.size()


def test_local_optima_match_brute_force_on_a_random_nb201_table():
    space = NASBench201Space()
    scores = np.random.default_rng(0).random(space.size()).astype(np.float32)
    members = space.enumerate()
    place = 5 ** np.arange(5, -1, -1)
    # Neighbours by hand: change digit e of the mixed-radix index to each other op.
    brute = np.ones(space.size(), bool)
    for e in range(6):
        for delta in range(1, 5):
            changed = members.copy()
            changed[:, e] = (changed[:, e] + delta) % 5
            brute &= ~(scores[changed @ place] > scores)
    found = np.asarray(metrics.local_optima(space, scores))
    np.testing.assert_array_equal(found, brute)
    assert 0 < found.sum() < space.size()


def test_local_optima_checks_alignment():
    with pytest.raises(ValueError, match=r"expected \(6,\)"):
        metrics.local_optima(ChainSpace(n=6), jnp.zeros(5))


@pytest.mark.parametrize("k", [1, 2, 4, 7])
def test_best_of_k_matches_enumerating_every_draw(k):
    """The exact best-of-k distribution equals the average over all C(N, k) subsets (with ties)."""
    scores = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0])
    bests = np.array([max(c) for c in itertools.combinations(scores, k)])
    mean, std = metrics.best_of_k_mean_std(scores, k)
    assert mean == pytest.approx(bests.mean(), rel=1e-12) and std == pytest.approx(bests.std(), abs=1e-9)
    values, p = metrics.best_of_k_distribution(scores, k)
    assert p.sum() == pytest.approx(1.0) and np.all(p >= -1e-15)
    found = np.array([0.5, 1.0, 3.5, 9.0, 10.0])
    brute = [np.mean(bests < f) + np.mean(bests == f) / 2 for f in found]
    np.testing.assert_allclose(metrics.prob_random_beaten(scores, k, found), brute, atol=1e-12)


def test_best_of_k_rejects_bad_input():
    with pytest.raises(ValueError, match="k=4"):
        metrics.best_of_k_distribution([1.0, 2.0, 3.0], 4)
    with pytest.raises(ValueError, match="finite"):
        metrics.best_of_k_mean_std([1.0, np.nan], 1)
