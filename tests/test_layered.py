"""Layer-wise ConvNet execution: same logits, gradients and training as the whole-network program."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax.nn import build, ops
from nasjax.spaces.convnet import ConvNetSpace
from nasjax.train import TrainConfig, layered, train_population
from nasjax.train.steps import cross_entropy

SPACE = ConvNetSpace(channels=(4, 8), kernels=(3, 5), max_depth=3)
# Same math as the whole-network program, different fusion: float summation order only.
TOL = dict(rtol=1e-5, atol=1e-5)
CONFIG = TrainConfig(epochs=2, batch_size=32, lr=0.05)
KEY = jax.random.PRNGKey(3)


@pytest.mark.parametrize("layers", [[(8, 3), (4, 5), (8, 3)], [(4, 5)], [(8, 5), (4, 3)]])
def test_logits_and_gradients_match_true_module(cifar_batch, layers):
    enc = SPACE.encode(layers)
    module = build(SPACE, enc)
    params = layered.init_params(SPACE, enc, jax.random.PRNGKey(1))
    plan = layered.plan(SPACE, enc)
    y = jnp.arange(8) % 10

    z = layered._forward(params, plan, cifar_batch)[1][-1]
    logits = layered.head_logits(params["head"]["kernel"], params["head"]["bias"], z, pool=plan.pools[-1])
    np.testing.assert_allclose(logits, module.apply({"params": params}, cifar_batch), **TOL)
    chex.assert_shape(logits, (8, 10))

    loss, grads = layered._gradients(params, plan, cifar_batch, y, 0.1)
    ref_loss, ref_grads = jax.value_and_grad(
        lambda p: cross_entropy(module.apply({"params": p}, cifar_batch), y, 0.1))(params)
    np.testing.assert_allclose(loss, ref_loss, **TOL)
    chex.assert_trees_all_close(grads, ref_grads, **TOL)


def _ks_distance(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    grid = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, grid, "right") / len(a)
                               - np.searchsorted(b, grid, "right") / len(b))))


def test_init_params_draw_from_the_modules_initializer_distribution():
    """`init_params` is not `module.init`'s bits for the key (one draw for every architecture instead
    of one program per architecture) but the same distribution: the same tree, zero biases, and
    kernels indistinguishable from draws of the module's own initializer (KS distance, 100k values)."""
    space = ConvNetSpace.motivating()
    enc = space.encode([(64, 5), (64, 5)])
    ours = layered.init_params(space, enc, jax.random.PRNGKey(0))
    flax_init = jax.eval_shape(lambda: build(space, enc).init(jax.random.PRNGKey(0),
                                                                  jnp.zeros((1, 32, 32, 3))))
    chex.assert_trees_all_equal_shapes_and_dtypes(ours, flax_init["params"])
    kernel = ours["conv1"]["kernel"]  # 5 x 5 x 64 x 64
    # The module's own kernel initializer (module.init of the whole network compiles for a minute).
    theirs = jax.jit(ops.Conv(64, (5, 5)).kernel_init, static_argnums=1)(jax.random.PRNGKey(1), kernel.shape)
    assert _ks_distance(kernel, theirs) < 1.36 * np.sqrt(2 / kernel.size)  # 5 % two-sample level
    # Same scale and truncation: std sqrt(1 / fan_in), nothing beyond 2 / 0.8796 of it.
    bound = 2 * np.sqrt(1 / (5 * 5 * 64)) / 0.8796
    for k in (kernel, theirs):
        assert abs(np.std(k) * np.sqrt(5 * 5 * 64) - 1) < 0.01 and 0.99 * bound < np.abs(k).max() <= bound
    assert all(not np.any(ours[n]["bias"]) for n in ours)
    again = layered.init_params(space, enc, jax.random.PRNGKey(0))
    other = layered.init_params(space, enc, jax.random.PRNGKey(1))
    chex.assert_trees_all_equal(ours, again)
    assert not np.array_equal(ours["conv1"]["kernel"], other["conv1"]["kernel"])


def test_plan_pools_like_the_module():
    space = ConvNetSpace(channels=(4,), kernels=(3,), max_depth=8, pool_every=2)
    plan = layered.plan(space, space.encode([(4, 3)] * 8))
    # Pools after layers 2, 4, 6, 8 (32 -> 2 pixels); unit 0's input is the image.
    assert plan.pools == (False, False, True, False, True, False, True, False, True)
    assert layered.plan(space, space.encode([(4, 3)])).pools == (False, False)
    assert layered.plan(space, space.encode([(4, 3)] * 2)).pools == (False, False, True)


@pytest.fixture(scope="module")
def small(cifar):
    return cifar.take(train=128, val=96, test=96)


@pytest.fixture(scope="module")
def archs():
    return np.stack([SPACE.encode(l) for l in ([(8, 3), (4, 5)], [(4, 5)], [(4, 3), (8, 3), (4, 3)])])


@pytest.fixture(scope="module")
def trained(small, archs):
    return train_population(SPACE, archs, small, CONFIG, KEY, execution="layered")


def test_auto_is_layered_on_cpu(trained, small, archs):
    assert jax.default_backend() == "cpu"
    again = train_population(SPACE, archs, small, CONFIG, KEY)  # auto; same key -> same bits
    for a, b in zip(again[0], trained[0]):
        assert (a.val_acc, a.test_acc, a.failed) == (b.val_acc, b.test_acc, b.failed)
    for sa, sb in zip(again[1].states, trained[1].states):
        jax.tree.map(np.testing.assert_array_equal, sa.params, sb.params)


def test_training_matches_whole_network_program(trained, small, archs):
    """Two epochs (8 SGD steps) layer-wise vs the per-architecture program: same parameters up to
    float summation order, so the same accuracies up to a flipped prediction or two."""
    ref = train_population(SPACE, archs, small, CONFIG, KEY, execution="per_arch")
    for a, b in zip(trained[0], ref[0]):
        np.testing.assert_allclose(a.val_acc, b.val_acc, atol=2 / 96)
        assert (a.params, a.flops, a.failed) == (b.params, b.flops, b.failed)
    for sa, sb in zip(trained[1].states, ref[1].states):
        chex.assert_trees_all_close(sa.params, sb.params, rtol=1e-4, atol=1e-5)
        assert int(sa.step) == int(sb.step) and np.array_equal(sa.rng, sb.rng)


def test_continues_a_per_arch_population(trained, small, archs):
    """True-size states are shared: one epoch per_arch, then one layer-wise, as both layer-wise."""
    _, half = train_population(SPACE, archs, small, CONFIG, KEY, epochs=1, execution="per_arch")
    results, state = train_population(SPACE, None, small, CONFIG, state=half, execution="layered")
    assert list(state.epochs_done) == [2, 2, 2]
    for a, b in zip(results, trained[0]):
        np.testing.assert_allclose(a.val_acc, b.val_acc, atol=2 / 96)


def test_nan_marks_failure(small, archs):
    results, _ = train_population(SPACE, archs[:1], small, CONFIG.replace(lr=1e6, grad_clip=0.0), KEY,
                                  execution="layered")
    assert results[0].failed and "non-finite" in results[0].reason


def test_batch_norm_space_is_refused(small):
    space = ConvNetSpace(channels=(4,), kernels=(3,), max_depth=1, batch_norm=True)
    assert not layered.supports(space)
    with pytest.raises(ValueError, match="layered"):
        train_population(space, space.encode([(4, 3)])[None], small, CONFIG, KEY, execution="layered")
