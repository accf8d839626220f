"""NASNetSpace (LaNAS's NASNet cell space, `002_*` §4.3): the reference's flat list and genotype strings,
the paper's size, the loose-end concatenation, LaNet's published parameter count, and its networks (the
genotype built in or as data: same values and gradients, one compiled program for every cell)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nasjax.nn
from nasjax.spaces import LANET, InvalidEncodingError, NASNetSpace
from nasjax.spaces.nasnet import OPS, PAPER_OPS, loose_ends

SPACE = NASNetSpace()
LANET_ENC = SPACE.from_list(LANET)
_sample = jax.jit(SPACE.sample, static_argnums=1)


def reference_count(space: NASNetSpace, enc, channels: int, layers: int) -> int:
    """Parameters of LaMCTS' LaNet `NetworkCIFAR` (model.py, operations.py) without the auxiliary head,
    as its `count_parameters_in_MB` counts them (every conv and linear weight and bias, BN weight and
    bias), by the arithmetic of its constructors: an independent count to compare with."""
    g = space.to_genotype(enc)

    def op(name, c, stride):
        if name.startswith("sep_conv"):
            return 2 * (int(name[-1]) ** 2 * c + c * c + 2 * c)  # two (depthwise, pointwise, BN)
        if name == "skip_connect" and stride == 2:
            return c * c + 2 * c  # FactorizedReduce: two 1x1 convs to c / 2, BN
        return c * c if name == "conv_1x1" else 0

    total = 27 * 3 * channels + 2 * 3 * channels  # stem conv 3x3 (3 -> 3C) and BN
    c_pp, c_p, c, reduction_prev = 3 * channels, 3 * channels, channels, False
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c = 2 * c if reduction else c
        total += (2 * c_pp * (c // 2) if reduction_prev else c_pp * c) + 2 * c + c_p * c + 2 * c
        total += sum(op(name, c, 2 if reduction and j < 2 else 1) for name, j in g.normal)
        concat = g.reduce_concat if reduction else g.normal_concat
        c_pp, c_p, reduction_prev = c_p, len(concat) * c, reduction
    return total + c_p * 10 + 10


def _param_shapes(net) -> dict:
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    return jax.eval_shape(net.init, jax.random.key(0), x)["params"]


# --- the encoding ------------------------------------------------------------------------------------
def test_reference_list_round_trips():
    assert SPACE.to_list(LANET_ENC) == list(LANET)
    # [node, slot] = (input, op): node 0 is skip_connect from c_{k-2} and from c_{k-1}; node 4 is
    # skip_connect from node 1 and sep_conv_5x5 from node 2 (the cell of `002_*` A.2).
    assert LANET_ENC[0].tolist() == [[0, 2], [1, 2]] and LANET_ENC[4].tolist() == [[3, 2], [4, 3]]
    for enc in np.asarray(_sample(jax.random.key(0), 32)):
        assert SPACE.from_list(SPACE.to_list(enc)).tolist() == enc.tolist()


def test_genotype_strings_both_ways():
    g = SPACE.to_genotype(LANET_ENC)
    assert g.normal[:4] == [("skip_connect", 0), ("skip_connect", 1), ("sep_conv_3x3", 1), ("skip_connect", 1)]
    assert g.normal == g.reduce and g.normal_concat == g.reduce_concat == [5, 6, 7, 8]
    np.testing.assert_array_equal(SPACE.from_genotype(repr(g)), LANET_ENC)
    np.testing.assert_array_equal(SPACE.from_genotype(g), LANET_ENC)
    for enc in np.asarray(_sample(jax.random.key(1), 16)):
        np.testing.assert_array_equal(SPACE.from_genotype(SPACE.describe(enc)), enc)


@pytest.mark.parametrize("values, message", [
    (LANET[:-1], "27 ints, expected 4 per node"),
    ((4,) + LANET[1:], "node 0 slot 0: op id 4 out of range"),
    (LANET[:14] + (2,) + LANET[15:], "node 0 slot 0: input index 2 not available"),
    (LANET[:27] + (9,), "node 6 slot 1: input index 9 not available"),
    ((2.0,) + LANET[1:], "must be ints"),
])
def test_from_list_names_the_problem(values, message):
    with pytest.raises(InvalidEncodingError, match=message):
        SPACE.from_list(values)


@pytest.mark.parametrize("change, message", [
    (lambda g: g._replace(reduce=g.reduce[::-1]), "shares one cell"),
    (lambda g: g._replace(normal_concat=[2, 3, 4, 5, 6, 7, 8]), r"normal_concat .*no node reads, \[5, 6, 7, 8\]"),
    (lambda g: g._replace(normal=g.normal[:-2], reduce=g.reduce[:-2]), "12 edges, expected 2 per node"),
])
def test_from_genotype_rejects_what_the_space_cannot_express(change, message):
    with pytest.raises(InvalidEncodingError, match=message):
        SPACE.from_genotype(change(SPACE.to_genotype(LANET_ENC)))


def test_size_is_the_papers_and_slots_are_ordered():
    """4.36 x 10^17 (`002_*` §4.3): 7 nodes, 4 ops, each slot's op and input free (ordered pairs)."""
    assert SPACE.size() == 4 ** 14 * math.factorial(8) ** 2
    assert f"{SPACE.size():.2e}" == "4.36e+17"
    swapped = LANET_ENC[:, ::-1]
    assert SPACE.to_list(swapped) != list(LANET)  # a different encoding ...
    assert SPACE.arch_hash(swapped) == SPACE.arch_hash(LANET_ENC)  # ... of the same network
    assert SPACE.arch_hash(SPACE.mutate(jax.random.key(0), LANET_ENC)) != SPACE.arch_hash(LANET_ENC)


def test_neighbours_are_every_one_slot_edit():
    nbrs, mask = SPACE.neighbors(LANET_ENC)
    real = np.asarray(nbrs)[np.asarray(mask)]
    k = len(OPS)
    assert len(real) == sum(2 * (k - 1 + i + 1) for i in range(SPACE.num_nodes))
    assert all(np.count_nonzero(r != LANET_ENC) == 1 for r in real)
    assert len({r.tobytes() for r in real}) == len(real)


def test_paper_ops_configuration():
    space = NASNetSpace(ops=PAPER_OPS)
    assert space.size() == 8 ** 14 * math.factorial(8) ** 2
    with pytest.raises(ValueError, match="ops must be distinct names"):
        NASNetSpace(ops=("sep_conv_3x3", "none"))


# --- the concatenation rule ----------------------------------------------------------------------------
# Two nodes, hand-made: node 0 = sep_conv_3x3(c_{k-1}) + sep_conv_3x3(c_{k-1}) (one pair twice: two
# separate convolutions); node 1 = max_pool_3x3(node 0) + skip_connect(c_{k-1}). No node reads c_{k-2}:
# the normal cell concatenates [c_{k-2}, node 1], the reduction cell (whose inputs are at twice its
# resolution) [node 1].
SMALL = NASNetSpace(num_nodes=2, init_channels=4, layers=3)
HAND = SMALL.from_list([0, 0, 1, 2, 1, 1, 2, 1])


def test_concatenation_rule_on_a_hand_made_cell():
    assert loose_ends(HAND, False).tolist() == [True, False, False, True]
    assert loose_ends(HAND, True).tolist() == [False, True]
    np.testing.assert_array_equal(loose_ends(jnp.asarray(HAND), False), loose_ends(HAND, False))
    g = SMALL.to_genotype(HAND)
    assert (g.normal_concat, g.reduce_concat) == ([0, 3], [3])


@pytest.mark.slow
def test_the_network_reads_the_unused_cell_input_and_twins_are_two_ops(cifar_batch):
    """The first cell (normal) has no node reading c_{k-2}, its preprocessed stem: the concatenation
    alone carries it, so the loss has a gradient for that preprocessing (it would have none if unused
    cell inputs were not concatenated). Node 0's two sep_conv_3x3 of c_{k-1} have weights of their own
    (the same weights twice would get the same gradient)."""
    net = nasjax.nn.build(SMALL, HAND)
    x = cifar_batch[:2]
    variables = net.init(jax.random.key(0), x)

    def loss(params):
        logits, _ = net.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
        return jnp.sum(logits ** 2)

    grads = jax.grad(loss)(variables["params"])
    assert np.abs(np.asarray(grads["cell0"]["preprocess"]["preprocess0"]["pointwise"])).max() > 0
    spec = nasjax.nn.cells.CellSpec(SMALL.ops, 2, 4, reduction=False, loose_ends=True, twins=True)
    first, second = (spec.edge_index("sep_conv_3x3", 0, 1, twin) for twin in (0, 1))
    kernel = np.asarray(grads["cell0"]["edges"]["sep_conv_3x3"]["sep1"]["depthwise"])
    assert first != second and np.abs(kernel[first]).max() > 0 and np.abs(kernel[second]).max() > 0
    assert not np.allclose(kernel[first], kernel[second])


@pytest.mark.parametrize("space", [SMALL, NASNetSpace(ops=PAPER_OPS, num_nodes=3)])
def test_param_count_is_the_reference_networks(space):
    """`nasjax.nn.param_count` against the reference network's arithmetic, for the hand-made cell and
    random cells (every kind of loose end; readers of a cell count the rows of the states it concatenates)."""
    encs = [HAND] if space == SMALL else []
    encs += list(np.asarray(jax.jit(space.sample, static_argnums=1)(jax.random.key(2), 6)))
    shapes = _param_shapes(nasjax.nn.build(space, encs[0], init_channels=6, layers=5))
    for enc in encs:
        assert nasjax.nn.param_count(space, enc, shapes) == reference_count(space, enc, 6, 5)


def test_lanet_has_the_published_parameter_count():
    """36 channels, 20 cells, no auxiliary head: 3,222,982 (`002_*` §4.3's 3.22 M; LaMCTS' train.py logs
    `count_parameters_in_MB`, which skips the auxiliary head)."""
    shapes = _param_shapes(nasjax.nn.build(SPACE, LANET_ENC, init_channels=36, layers=20))
    assert nasjax.nn.param_count(SPACE, LANET_ENC, shapes) == reference_count(SPACE, LANET_ENC, 36, 20) == 3_222_982


# --- the genotype as data --------------------------------------------------------------------------------
def _every_op_cell(space: NASNetSpace) -> np.ndarray:
    """Node i: ops 2i and 2i + 1, from the two cell inputs (stride 1 in the normal cell, 2 in the reduction)."""
    return np.asarray([[[i % 2, 2 * i], [(i + 1) % 2, 2 * i + 1]] for i in range(space.num_nodes)], np.int32)


@pytest.mark.slow
def test_supernet_path_equals_its_standalone_network_and_compiles_once(cifar_batch, random_variables,
                                                                        assert_supernet_paths_equal_standalone):
    """`nasjax.nn.supernet` (the scan cell, genotype traced) against `nasjax.nn.build` (genotype built in)
    on the same weights: training-mode logits, auxiliary logits, batch statistics and every gradient,
    with drop-path, for a cell running every paper op at stride 1 and 2 and a cell whose c_{k-2} is a
    loose end and a node with one pair twice; the second cell runs the first one's compiled program."""
    space = NASNetSpace(ops=PAPER_OPS, num_nodes=4, init_channels=4, layers=3)
    first = _every_op_cell(space)
    second = np.array(first)
    second[:, :, 0] = np.maximum(second[:, :, 0], 1)  # nothing reads c_{k-2}: a loose end
    second[2] = [[2, 3], [2, 3]]  # node 2 takes sep_conv_3x3 of node 0 twice: two sets of weights
    second[3, 1] = [4, PAPER_OPS.index("conv_1x1")]  # node 3 reads node 2
    assert loose_ends(second, False)[0] and not loose_ends(first, False)[0]
    supernet = nasjax.nn.supernet(space, auxiliary=True, drop_path_rate=0.2)
    x = cifar_batch[:4]
    variables = random_variables(supernet, x[:1], nasjax.nn.arch_data(space, first))
    traced = assert_supernet_paths_equal_standalone(space, supernet, variables, x, (first, second),
                                                    auxiliary=True, drop_path_rate=0.2)
    assert traced._cache_size() == 1  # the second cell compiled nothing
