"""train_population: independence, sharding, continuation, failure isolation, determinism."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from nasjax.nn import build
from nasjax.spaces.convnet import ConvNetSpace
from nasjax.spaces.darts import DARTSSpace
from nasjax.train import TrainConfig, arch_key, load_population, save_population, select, train_population

SPACE = ConvNetSpace(channels=(4, 8), kernels=(3, 5), max_depth=2)
CONFIG = TrainConfig(epochs=2, batch_size=32, lr=0.05)
KEY = jax.random.PRNGKey(7)


@pytest.fixture(scope="module")
def small(cifar):
    return cifar.take(train=256, val=128, test=128)


@pytest.fixture(scope="module")
def archs():
    return np.stack([SPACE.encode(l) for l in ([(8, 3), (4, 5)], [(4, 5)], [(4, 3), (8, 5)])])


@pytest.fixture(scope="module")
def population(small, archs):
    return train_population(SPACE, archs, small, CONFIG, KEY, execution="loop")


def _accs(results):
    return [(r.val_acc, r.test_acc, r.failed) for r in results]


def _same_params(a, b):
    for sa, sb in zip(a.states, b.states):
        jax.tree.map(np.testing.assert_array_equal, sa.params, sb.params)


def test_results_shape(population, archs):
    results, state = population
    assert len(results) == len(archs)
    for r, a in zip(results, archs):
        np.testing.assert_array_equal(r.arch, a)
        assert len(r.val_acc) == CONFIG.epochs and not r.failed and r.reason == ""
        assert 0.0 <= r.test_acc <= 1.0 and r.params > 0 and r.flops > 0 and r.wall_time > 0
    true = build(SPACE, archs[0]).init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
    assert results[0].params == sum(int(np.prod(v.shape)) for v in jax.tree.leaves(true))


def test_same_seed_same_bits(population, small, archs):
    again = train_population(SPACE, archs, small, CONFIG, KEY, execution="loop")
    assert _accs(again[0]) == _accs(population[0])
    _same_params(again[1], population[1])


def test_population_equals_independent_runs(population, small, archs):
    for i in (0, 2):
        alone, st = train_population(SPACE, archs[i:i + 1], small, CONFIG, keys=[arch_key(KEY, i)],
                                     execution="loop")
        assert _accs(alone) == _accs(population[0][i:i + 1])


def test_sharded_equals_unsharded(population, small, archs):
    assert len(jax.devices()) == 4
    mesh = Mesh(np.array(jax.devices()), ("pop",))
    sharded = train_population(SPACE, archs, small, CONFIG, KEY, mesh=mesh, execution="sharded")
    assert _accs(sharded[0]) == _accs(population[0])
    for sa, sb in zip(sharded[1].states, population[1].states):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), sa.params, sb.params)


def test_per_arch_programs_match_masked(population, small, archs):
    """True-size programs train the same networks: same accuracies up to float summation order."""
    per_arch, state = train_population(SPACE, archs, small, CONFIG, KEY, execution="per_arch")
    assert not state.shared
    for a, b in zip(per_arch, population[0]):
        np.testing.assert_allclose(a.val_acc, b.val_acc, atol=2 / 128)  # <= 2 of 128 images flip
        assert a.params == b.params and a.flops == b.flops


def test_continuation_same_bits(population, small, archs, tmp_path):
    _, half = train_population(SPACE, archs, small, CONFIG, KEY, epochs=1, execution="loop")
    assert list(half.epochs_done) == [1, 1, 1]
    save_population(tmp_path / "pop.pkl", half)
    rest = train_population(SPACE, None, small, CONFIG, state=load_population(tmp_path / "pop.pkl"),
                            execution="loop")
    assert _accs(rest[0]) == _accs(population[0])
    _same_params(rest[1], population[1])
    # A selected subset (successive halving's survivors) continues with the same bits.
    some, _ = train_population(SPACE, None, small, CONFIG, state=select(half, [2, 0]), execution="loop")
    assert _accs(some) == [_accs(population[0])[2], _accs(population[0])[0]]


def test_diverging_arch_fails_alone(population, small, archs):
    """A NaN-poisoned arch is marked failed; the others train to the same bits as without it."""
    _, half = train_population(SPACE, archs, small, CONFIG, KEY, epochs=1, execution="loop")
    poisoned = list(half.states)
    poisoned[1] = poisoned[1].replace(params=jax.tree.map(lambda p: p * np.nan, poisoned[1].params))
    results, _ = train_population(SPACE, None, small, CONFIG, state=dataclasses.replace(
        half, states=tuple(poisoned)), execution="loop")
    assert results[1].failed and "non-finite loss" in results[1].reason
    assert len(results[1].val_acc) == 1
    assert _accs([results[0], results[2]]) == _accs([population[0][0], population[0][2]])


def test_huge_lr_reported_failed(small, archs):
    results, _ = train_population(SPACE, archs[:1], small, CONFIG.replace(lr=1e6, grad_clip=0.0), KEY,
                                  execution="loop")
    assert results[0].failed and "non-finite" in results[0].reason


@pytest.mark.slow  # a DARTS network compiles for ~15-60 s on this CPU
def test_generic_space_path(small):
    """Per-architecture programs for cell spaces, with auxiliary tower, drop-path and cutout switched on."""
    space = DARTSSpace(init_channels=4, layers=3)
    enc = space.sample(jax.random.PRNGKey(0), 1)
    config = TrainConfig(epochs=1, batch_size=32, auxiliary_weight=0.4,
                         drop_path=0.2, cutout=16)
    (res,), _ = train_population(space, enc, small._replace(
        train_images=small.train_images[:64], train_labels=small.train_labels[:64]), config, KEY)
    assert not res.failed and res.params > 0 and res.flops > 0 and len(res.val_acc) == 1


def test_bad_inputs(population, small, archs):
    with pytest.raises(ValueError, match="execution"):
        train_population(SPACE, archs, small, CONFIG, KEY, execution="warp")
    with pytest.raises(ValueError, match="epochs"):
        train_population(SPACE, archs, small, CONFIG, KEY, epochs=5)
    with pytest.raises(ValueError):
        train_population(SPACE, np.full_like(archs, 9), small, CONFIG, KEY)
    with pytest.raises(ValueError, match="cannot continue"):
        train_population(SPACE, None, small, CONFIG, state=population[1], execution="per_arch")
