"""The bit-reproducible arithmetic (`nasjax.search.numerics`): exact sums, rounded products,
projections and the SPD solve give the same bits batched (vmapped) and alone, and are as accurate as
float32 allows."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax.search import numerics


def test_exact_sums_do_not_depend_on_the_order_of_addition():
    """Per-group sums are the same bits whatever the order of the samples or the chunking, and as
    accurate as float32 allows (compared with float64)."""
    rng = np.random.default_rng(1)
    c = 1000
    values = (rng.normal(size=(5, c)) * 10.0 ** rng.integers(-4, 5, size=(5, 1))).astype(np.float32)
    values[:, 700:] = 0.0  # the history's unused rows
    groups = rng.integers(0, 3, size=c)[None] == np.arange(3)[:, None]
    sums = np.asarray(numerics.exact_sums(jnp.asarray(groups), jnp.asarray(values)))
    perm = rng.permutation(c)
    np.testing.assert_array_equal(
        numerics.exact_sums(jnp.asarray(groups[:, perm]), jnp.asarray(values[:, perm])), sums)
    parts = numerics.exact_parts(jnp.asarray(values))
    assert c % numerics.CHUNK
    for count in (700, c):  # chunks up to the count; at c the last one overlaps the one before
        np.testing.assert_array_equal(
            numerics.group_sums(jnp.asarray(groups), parts, jnp.int32(count)), sums)
    # vmapped over histories of different lengths (one loop up to the longest): the same bits
    shorter = values.copy()
    shorter[:, 300:] = 0.0
    both = jax.vmap(lambda v, n: numerics.group_sums(jnp.asarray(groups), numerics.exact_parts(v), n))(
        jnp.asarray(np.stack([shorter, values])), jnp.asarray([300, 700]))
    np.testing.assert_array_equal(both[1], sums)
    np.testing.assert_array_equal(both[0], numerics.exact_sums(jnp.asarray(groups), jnp.asarray(shorter)))
    exact = (groups[:, None, :] * values[None].astype(np.float64)).sum(axis=2)
    assert np.all(np.abs(sums - exact) <= 1e-6 * np.abs(exact) + 1e-9 * np.abs(values).max(axis=1))


@pytest.mark.parametrize("batch", [(), (3,)])
def test_exact_matmul_gives_the_same_bits_as_a_product_and_as_a_reduction(batch):
    """Both executions of `exact_matmul` (CPU's matrix product, the reduction used elsewhere) give
    the same bits on exact parts and on a one-hot selection, batched or not; the selection picks
    exactly the indexed entries."""
    rng = np.random.default_rng(2)
    values = (rng.normal(size=(*batch, 4, 600)) * 10.0 ** rng.integers(-3, 4, size=(*batch, 4, 1)))
    parts = numerics.exact_parts(jnp.asarray(values.reshape(-1, 600).astype(np.float32)))
    parts = parts.reshape(*batch, 8, 600)
    groups = jnp.asarray(rng.integers(0, 5, size=(*batch, 600, 1)) == np.arange(5))  # (..., C, W)
    product = numerics.exact_matmul(parts, groups, backend="cpu")
    reduction = numerics.exact_matmul(parts, groups, backend="gpu")
    chex.assert_shape(product, (*batch, 8, 5))
    np.testing.assert_array_equal(product, reduction)
    one_hot = jnp.asarray(rng.integers(0, 5, size=(*batch, 600))[..., None, :] == np.arange(5)[:, None])
    params = jnp.asarray(rng.normal(size=(*batch, 3, 5)).astype(np.float32))
    picked = numerics.exact_matmul(params, one_hot, backend="gpu")
    np.testing.assert_array_equal(picked, numerics.exact_matmul(params, one_hot, backend="cpu"))
    np.testing.assert_array_equal(picked, np.take_along_axis(
        np.asarray(params), np.broadcast_to(np.argmax(np.asarray(one_hot), axis=-2)[..., None, :],
                                            (*batch, 3, 600)), axis=-1))


def test_mul_is_the_product_rounded_to_22_mantissa_bits():
    rng = np.random.default_rng(2)
    a, b = (rng.normal(size=1000) * 10.0 ** rng.integers(-3, 4, size=1000)).astype(np.float32), \
        rng.normal(size=1000).astype(np.float32)
    got = np.asarray(jax.jit(numerics.mul)(a, b))
    exact = a.astype(np.float64) * b.astype(np.float64)  # exact: 24 + 24 bits fit in 53
    # Within half a unit of the 22-bit grid, and on it (the lowest float32 mantissa bit is clear).
    np.testing.assert_array_less(np.abs(got - exact), np.abs(exact) * 2.0 ** -22 + 1e-38)
    assert not np.any(got.view(np.uint32) & 1)


def test_project_and_spd_solve_give_the_same_bits_vmapped_and_alone():
    rng = np.random.default_rng(3)
    f, batch = 7, 6
    x = jnp.asarray(rng.normal(size=(batch, f, 50)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(batch, f)), jnp.float32)
    m = rng.normal(size=(batch, f, f))
    a = jnp.asarray(m @ np.swapaxes(m, 1, 2) + f * np.eye(f), jnp.float32)
    b = jnp.asarray(rng.normal(size=(batch, f)), jnp.float32)
    projections = jax.jit(jax.vmap(numerics.project))(x, w)
    solutions = jax.jit(jax.vmap(numerics.spd_solve))(a, b)
    project, solve = jax.jit(numerics.project), jax.jit(numerics.spd_solve)
    for i in range(batch):
        np.testing.assert_array_equal(projections[i], project(x[i], w[i]))
        np.testing.assert_array_equal(solutions[i], solve(a[i], b[i]))


def test_spd_solve_is_accurate():
    """Against float64 LAPACK, on systems of condition number up to 1e4: the error is within what
    float32 data allows (condition number x float32 epsilon)."""
    rng = np.random.default_rng(4)
    for f, cond in [(1, 1.0), (4, 10.0), (12, 1e2), (23, 1e4)]:
        q, _ = np.linalg.qr(rng.normal(size=(f, f)))
        a = ((q * np.geomspace(1.0, 1.0 / cond, f)) @ q.T).astype(np.float32)
        a = (a + a.T) / 2  # exactly symmetric in float32
        b = rng.normal(size=f).astype(np.float32)
        got = np.asarray(numerics.spd_solve(jnp.asarray(a), jnp.asarray(b)), np.float64)
        want = np.linalg.solve(a.astype(np.float64), b.astype(np.float64))
        err = np.linalg.norm(got - want) / np.linalg.norm(want)
        assert err < 4 * f * cond * np.finfo(np.float32).eps, (f, cond, err)


def test_hashed_uniform_is_uniform_and_depends_on_the_key():
    u = np.asarray(numerics.hashed_uniform(jax.random.key(0), 100_000))
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts - 10_000) < 500), counts  # ~5 standard deviations
    other = np.asarray(numerics.hashed_uniform(jax.random.key(1), 100_000))
    assert np.mean(u == other) < 1e-3
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.02  # neighbouring indices look independent


def test_exact_parts_are_on_their_grids_inside_a_jit():
    """Compiled, the parts are still rounded to their grids (a rounding trick that XLA simplifies
    away returned the values unchanged: then the sums were not exact), and their sums are the
    float64 sums exactly."""
    rng = np.random.default_rng(4)
    values = jnp.asarray(rng.normal(size=(5, 84)).astype(np.float32))
    parts = np.asarray(jax.jit(numerics.exact_parts)(values))
    np.testing.assert_array_equal(parts, numerics.exact_parts(values))  # op by op: the same bits
    grid = 2.0 ** (np.frexp(np.max(np.abs(np.asarray(values)), axis=1) * 84)[1] - 23)
    np.testing.assert_array_equal(np.mod(parts[:5], grid[:, None]), 0.0)
    groups = jnp.asarray(rng.random((3, 84)) < 0.5)
    for backend in ("cpu", "gpu"):
        sums = jax.jit(lambda g, p, b=backend: numerics.exact_matmul(p, g.T, backend=b))(groups, parts)
        exact = np.asarray(parts, np.float64) @ np.asarray(groups, np.float64).T
        np.testing.assert_array_equal(np.asarray(sums, np.float64), exact)


def test_vmapped_lanas_equals_looped_with_the_accelerators_branch_forced():
    """With `exact_matmul`'s reduction (the branch every backend but CPU takes) forced on CPU,
    LaNAS vmapped over 2 keys equals the 2 searches run by Python loops of jitted ask/tell."""
    from nasjax.search import base, scan
    from nasjax.spaces import ConvNetSpace

    space = ConvNetSpace(channels=(16, 32), kernels=(3, 5), max_depth=3)
    weights = jnp.asarray([1.0, -0.01, 0.02, -0.03, 0.5, -0.25, 0.125])

    def objective(archs, key=None):
        return jnp.round(100 * jax.vmap(space.features)(archs) @ weights) / 100

    keys = jax.random.split(jax.random.key(0), 2)
    with numerics.matmul_backend("gpu"):
        # A configuration of its own, so that no program compiled outside the block is reused.
        strat = base.make("lanas", space, capacity=84, n_candidates=253, n_init=8, n_select=4)
        batched = jax.jit(jax.vmap(lambda k: scan(strat, objective, k, 21, 4)))(keys)
        init, ask, tell = jax.jit(strat.init), jax.jit(strat.ask, static_argnums=1), jax.jit(strat.tell)
        for i, key in enumerate(keys):
            state = init(jax.random.split(key)[0])
            for _ in range(21):
                archs, state = ask(state, 4)
                state = tell(state, archs, objective(archs))
            np.testing.assert_array_equal(np.asarray(batched.history.encodings[i]),
                                          np.asarray(state.history.encodings))
            np.testing.assert_array_equal(np.asarray(batched.weights[i]), np.asarray(state.weights))
