"""ConvNetSpace specifics: the LaNAS presets, enumeration, encoding round trips, validation messages,
the BatchNorm / no-pooling module options."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax.nn import build
from nasjax.spaces import ConvNetSpace, InvalidEncodingError


def test_motivating_preset_has_1364_distinct_valid_networks():
    space = ConvNetSpace.motivating()
    assert space.size() == 1364
    encs = space.enumerate()
    assert encs.shape == (1364, 11)
    assert len({e.tobytes() for e in encs}) == 1364
    assert bool(jnp.all(jax.vmap(space.is_valid)(encs)))
    space.validate(encs)


def test_convnet60k_ranges():
    space = ConvNetSpace.convnet60k()
    assert space.size() == sum(6 ** depth for depth in range(1, 9))
    assert space.encoding_shape == (17,)


@pytest.mark.parametrize("space", [ConvNetSpace.motivating(),
                                   ConvNetSpace(channels=(16, 32, 64), kernels=(3, 5, 7), min_depth=2,
                                                max_depth=4)])
def test_index_inverts_enumerate(space):
    encs = space.enumerate()
    np.testing.assert_array_equal(jax.jit(jax.vmap(space.index))(encs), np.arange(len(encs)))


def test_encode_layers_round_trip():
    space = ConvNetSpace.motivating()
    for enc in space.enumerate()[::37]:
        assert np.array_equal(space.encode(space.layers(enc)), enc)
    enc = space.encode([(64, 5), (32, 3)])
    assert space.describe(enc) == "ConvNet depth 2: conv5x5-64, conv3x3-32 (pool every 2)"
    module = build(space, enc)
    assert module.channels == (64, 32) and module.kernels == (5, 3)


def test_choices_may_be_any_sequence():
    """Lists (or arrays) become tuples: the space stays hashable, as the static argument of jitted
    functions and the key of the engine's program caches."""
    space = ConvNetSpace(channels=[8, 16], kernels=np.array([3]), max_depth=2)
    assert space == ConvNetSpace(channels=(8, 16), kernels=(3,), max_depth=2)
    assert {space: "cached"}[ConvNetSpace(channels=(8, 16), kernels=(3,), max_depth=2)] == "cached"
    assert build(space, space.encode([(16, 3), (8, 3)])).channels == (16, 8)
    with pytest.raises(ValueError, match="channels must be a sequence of ints"):
        ConvNetSpace(channels=32)


def test_encode_rejects_unknown_choices():
    with pytest.raises(ValueError, match="not expressible"):
        ConvNetSpace.motivating().encode([(48, 3)])
    with pytest.raises(ValueError, match="layers outside"):
        ConvNetSpace.motivating().encode([(32, 3)] * 6)


def test_sampling_is_uniform_over_networks():
    space = ConvNetSpace.motivating()
    depths = np.asarray(jax.jit(space.sample, static_argnums=1)(jax.random.key(0), 200_000)[:, 0])
    expected = np.array([4 ** d for d in range(1, 6)]) / 1364
    np.testing.assert_allclose(np.bincount(depths, minlength=6)[1:] / len(depths), expected, atol=0.005)


@pytest.mark.parametrize("enc, message", [
    ([0, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1], "depth 0 outside"),
    ([2, 0, 2, -1, -1, -1, 0, 1, -1, -1, -1], "layer 1: channel index 2 out of range"),
    ([1, 0, -1, -1, -1, -1, 7, -1, -1, -1, -1], "layer 0: kernel index 7 out of range"),
    ([1, 0, 1, -1, -1, -1, 0, -1, -1, -1, -1], "layer 1 is beyond depth 1 but not padded"),
])
def test_validate_names_the_problem(enc, message):
    space = ConvNetSpace.motivating()
    with pytest.raises(InvalidEncodingError, match=message):
        space.validate(np.array(enc, np.int32))
    assert not bool(space.is_valid(jnp.array(enc, jnp.int32)))


def test_neighbors_count_for_a_middle_depth_net():
    space = ConvNetSpace.motivating()
    enc = space.encode([(32, 3), (64, 5)])
    nbrs, mask = space.neighbors(enc)
    # 2 layers x (1 channel + 1 kernel change) + 4 appended layers + 1 removal.
    assert int(mask.sum()) == 2 * 2 + 4 + 1


def test_features_hold_layer_values():
    space = ConvNetSpace.motivating()
    enc = space.encode([(64, 5), (32, 3)])
    np.testing.assert_array_equal(space.features(enc), [2, 64, 32, 0, 0, 0, 5, 3, 0, 0, 0])


def test_batch_norm_without_pooling_runs_on_real_cifar(cifar_batch, random_variables):
    space = ConvNetSpace(channels=(8, 16), kernels=(1, 3), max_depth=3, pool_every=0, batch_norm=True)
    module = build(space, space.encode([(8, 3), (16, 1), (16, 3)]))
    variables = random_variables(module, cifar_batch)
    assert set(variables["params"]) == {"conv0", "bn0", "conv1", "bn1", "conv2", "bn2", "head"}
    assert "bias" not in variables["params"]["conv0"]  # BatchNorm's shift replaces the conv bias
    logits, updates = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, cifar_batch)
    chex.assert_shape(logits, (cifar_batch.shape[0], 10))
    chex.assert_tree_all_finite(logits)
    assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(variables["batch_stats"])
    # No pooling: the last layer's feature map keeps the input's 32x32 resolution.
    _, state = jax.eval_shape(lambda v, x: module.apply(v, x, capture_intermediates=True,
                                                        mutable=["intermediates"]), variables, cifar_batch)
    chex.assert_shape(state["intermediates"]["conv2"]["__call__"][0], (cifar_batch.shape[0], 32, 32, 16))


def test_pool_positions_are_the_modules_and_stop_at_one_pixel():
    from nasjax.spaces.convnet import pool_positions

    assert pool_positions(2, 5, 32) == (False, True, False, True, False)
    assert pool_positions(1, 4, 4) == (True, True, False, False)  # 4 -> 2 -> 1, then no more pooling
    assert pool_positions(0, 3, 32) == (False, False, False)
    space = ConvNetSpace(channels=(4,), kernels=(3,), max_depth=4, pool_every=1)
    enc = space.encode([(4, 3)] * 4)
    module = build(space, enc)
    x = jnp.zeros((1, 4, 4, 3))
    _, state = jax.eval_shape(lambda: module.init_with_output(
        jax.random.key(0), x, capture_intermediates=True, mutable=["params", "intermediates"]))
    sizes = [state["intermediates"][f"conv{i}"]["__call__"][0].shape[1] for i in range(4)]
    assert sizes == [4, 2, 1, 1] and space.pool_positions(enc, 4) == (True, True, False, False)
