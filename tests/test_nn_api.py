"""nasjax.nn's one way to build networks: the registry, option checks and the supernet protocol."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nasjax.nn
from nasjax.nn import Networks, register
from nasjax.spaces import ConvNetSpace, DARTSSpace, NASBench201Space, RNNCellSpace, RNNDAGSpace


def test_every_space_builds_its_network_and_says_whether_it_has_a_supernet():
    """... and what one example of its input is: every network initializes from it (shapes only)."""
    expected = {ConvNetSpace(): ("ConvNet", False, True), NASBench201Space(): ("NB201Network", False, True),
                DARTSSpace(): ("DARTSNetwork", True, True), RNNCellSpace(): ("RNNLanguageModel", True, False),
                RNNDAGSpace(): ("RNNLanguageModel", True, False)}
    for space, (network, shared, images) in expected.items():
        enc = space.sample(jax.random.key(0), 1)[0]
        module = nasjax.nn.build(space, enc)
        assert type(module).__name__ == network
        assert nasjax.nn.has_supernet(space) == shared
        assert nasjax.nn.reads_images(space) == images
        example = nasjax.nn.example_input(space, module)
        assert (example[0].shape == (1, 32, 32, 3)) == images
        assert jax.eval_shape(module.init, jax.random.key(0), *example)["params"]


def test_an_option_the_builder_does_not_take_is_named():
    space = ConvNetSpace()
    enc = space.sample(jax.random.key(0), 1)[0]
    with pytest.raises(ValueError, match="ConvNetSpace's networks take no option 'auxiliary'; options: num_classes"):
        nasjax.nn.build(space, enc, auxiliary=True)
    with pytest.raises(ValueError, match="no option 'channels'"):
        nasjax.nn.supernet(DARTSSpace(), channels=8)
    with pytest.raises(ValueError, match="ConvNetSpace has no weight-sharing supernet"):
        nasjax.nn.supernet(space)
    with pytest.raises(ValueError, match="ConvNetSpace has no weight-sharing supernet"):
        nasjax.nn.arch_data(space, enc)


def test_unregistered_space_and_inherited_registration():
    class Unregistered:
        pass

    with pytest.raises(ValueError, match="no networks registered for Unregistered"):
        nasjax.nn.build(Unregistered(), np.zeros(3, np.int32))

    @dataclasses.dataclass(frozen=True)
    class Wider(ConvNetSpace):  # a subclass inherits ConvNetSpace's networks along the MRO
        pass

    space = Wider(channels=(8,))
    assert nasjax.nn.build(space, space.encode([(8, 3)])).channels == (8,)


def test_a_registration_needs_arch_data_with_its_supernet():
    with pytest.raises(ValueError, match="supernet and arch_data come together"):
        Networks(build=lambda space, enc: None, supernet=lambda space: None)
    with pytest.raises(ValueError, match="needs a space class"):
        register(ConvNetSpace(), Networks(build=lambda space, enc: None))


def test_param_count_defaults_to_every_leaf_and_darts_counts_the_chosen_path():
    space = NASBench201Space()
    enc = space.sample(jax.random.key(1), 1)[0]
    params = {"a": jnp.zeros((3, 4)), "b": {"c": jnp.zeros((5,))}}
    assert nasjax.nn.param_count(space, enc, params) == 17
    darts = DARTSSpace(init_channels=8, layers=3)
    enc = np.asarray(darts.sample(jax.random.key(2), 1)[0])
    net = nasjax.nn.supernet(darts)
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)), enc)["params"]
    every = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))
    assert 0 < nasjax.nn.param_count(darts, enc, shapes) < every
    # The supernet's tree is the stand-alone network's: same names and shapes.
    alone = jax.eval_shape(nasjax.nn.build(darts, enc).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert jax.tree.map(lambda s: s.shape, alone["params"]) == jax.tree.map(lambda s: s.shape, shapes)
