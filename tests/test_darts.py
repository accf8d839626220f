"""DARTSSpace: validity and its messages, exact size, uniform sampling, neighbours, genotypes both ways,
and the DARTS evaluation network (parameter count of DARTS_V2_CNN, real-image forward, drop-path, aux head)."""

import dataclasses
import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nasjax.nn
from nasjax.spaces import DARTS_V2_CNN, DARTSSpace, InvalidEncodingError, NotEnumerableError
from nasjax.spaces.darts import OPS

SPACE = DARTSSpace()
V2 = SPACE.from_genotype(*DARTS_V2_CNN)
# Cells: 0 normal, 1 reduce, 2 reduce (after a reduction); the auxiliary head reads cell 2 (8x8).
SMALL = dict(init_channels=8, layers=3)
# One compiled sampler shared by the tests (compiling one costs seconds); they draw 256 and slice.
_sample = jax.jit(SPACE.sample, static_argnums=1)


def _param_count(tree) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _edited(enc, cell, node, slot, field, value):
    enc = np.array(enc)
    enc[cell, node, slot, field] = value
    return enc


# --- validity --------------------------------------------------------------------------------------
@pytest.mark.parametrize("enc, message", [
    (np.zeros((2, 4, 2)), r"shape \(2, 4, 2\), expected \(2, 4, 2, 2\)"),
    (_edited(V2, 0, 1, 1, 1, 8), "normal cell node 1 slot 1: op id 8 out of range"),
    (_edited(V2, 1, 0, 0, 1, -1), "reduce cell node 0 slot 0: op id -1 out of range"),
    (_edited(V2, 0, 2, 0, 1, OPS.index("none")), "op 'none' is excluded"),
    (_edited(V2, 1, 0, 1, 0, 2), "reduce cell node 0 slot 1: input index 2 not available"),
    (_edited(V2, 0, 3, 1, 0, 6), "normal cell node 3 slot 1: input index 6 not available"),
    (_edited(V2, 0, 0, 1, 0, 0), "normal cell node 0: both inputs are 0; a node needs 2 distinct inputs"),
    (V2[:, :, ::-1], "not in ascending order"),
])
def test_validate_names_the_problem(enc, message):
    with pytest.raises(InvalidEncodingError, match=message):
        SPACE.validate(enc)
    if np.shape(enc) == SPACE.encoding_shape:
        assert not bool(jax.jit(SPACE.is_valid)(enc))


def test_none_is_valid_only_when_included():
    enc = _edited(V2, 0, 2, 0, 1, OPS.index("none"))
    DARTSSpace(include_none=True).validate(enc)
    assert bool(DARTSSpace(include_none=True).is_valid(enc)) and not bool(SPACE.is_valid(enc))


@pytest.mark.parametrize("space", [DARTSSpace(num_nodes=2, ops=("none", "skip_connect", "sep_conv_3x3")),
                                   DARTSSpace(num_nodes=2, ops=("none", "skip_connect", "sep_conv_3x3"),
                                              include_none=True)])
def test_size_counts_the_valid_encodings(space):
    # Validity factorizes over the two cells: count the valid cells by brute force, square.
    inputs = itertools.product(range(4), repeat=4)
    op_ids = list(itertools.product(range(len(space.ops)), repeat=4))
    cells = np.array([np.stack([np.reshape(i, (2, 2)), np.reshape(o, (2, 2))], -1)
                      for i in inputs for o in op_ids], np.int32)
    valid = jax.jit(jax.vmap(space.is_valid))(np.stack([cells, cells], axis=1))
    assert space.size() == int(valid.sum()) ** 2
    assert valid.sum() == 3 * len(space.allowed_ops) ** 4  # C(2,2) * C(3,2) input pairs


def test_full_space_size_and_not_enumerable():
    assert SPACE.size() == (1 * 3 * 6 * 10 * 7 ** 8) ** 2
    assert DARTSSpace(include_none=True).size() == (180 * 8 ** 8) ** 2
    with pytest.raises(NotEnumerableError):
        SPACE.enumerate()


# --- sampling -------------------------------------------------------------------------------------
def test_samples_are_valid_distinct_and_reproducible():
    """(vmap over keys: test_spaces.py; sampling with 'none' included: test_sampling_is_uniform.)"""
    encs = _sample(jax.random.key(0), 256)
    chex.assert_shape(encs, (256, *SPACE.encoding_shape))
    chex.assert_type(encs, jnp.int32)
    SPACE.validate(encs)
    assert bool(jnp.all(jax.jit(jax.vmap(SPACE.is_valid))(encs)))
    np.testing.assert_array_equal(encs, _sample(jax.random.key(0), 256))
    assert not np.array_equal(encs, _sample(jax.random.key(1), 256))
    assert len({e.tobytes() for e in np.asarray(encs)}) == 256
    assert OPS.index("none") not in np.asarray(encs)[..., 1]


def test_sampling_is_uniform():
    space = DARTSSpace(num_nodes=3, include_none=True)
    encs = np.asarray(jax.jit(space.sample, static_argnums=1)(jax.random.key(3), 60_000))
    space.validate(encs[:256])
    # Node 2 picks a pair from 4 predecessors: 6 pairs, each 1/6; ops uniform over all 8 ops.
    pairs = encs[:, :, 2, 0, 0] * 4 + encs[:, :, 2, 1, 0]
    freq = np.bincount(pairs.ravel(), minlength=16)[[1, 2, 3, 6, 7, 11]] / pairs.size
    np.testing.assert_allclose(freq, 1 / 6, atol=0.01)
    np.testing.assert_allclose(np.bincount(encs[..., 1].ravel(), minlength=8) / encs[..., 1].size,
                               1 / 8, atol=0.005)


# --- neighbours and features ----------------------------------------------------------------------
def test_neighbors_are_all_one_edit_networks():
    enc = np.asarray(_sample(jax.random.key(4), 256)[0])
    # One program for both (mutate builds the neighbours too): each compile costs seconds.
    both = jax.jit(lambda key, e: (SPACE.neighbors(e), SPACE.mutate(key, e)))
    (rows, mask), mutant = both(jax.random.key(5), enc)
    real = np.asarray(rows)[np.asarray(mask)]
    k = len(SPACE.allowed_ops)
    assert len(real) == 2 * sum(2 * (k - 1 + i) for i in range(SPACE.num_nodes))
    assert bool(jnp.all(jax.jit(jax.vmap(SPACE.is_valid))(np.concatenate([real, mutant[None]]))))
    assert len({r.tobytes() for r in real} | {np.asarray(enc).tobytes()}) == len(real) + 1
    # One edit: exactly one (input, op) edge differs, comparing each node's edges as a set.
    node_edges = lambda e: [set(map(tuple, node)) for node in np.asarray(e).reshape(-1, 2, 2).tolist()]  # noqa: E731
    for r in real:
        assert sum(len(ours - theirs) for ours, theirs in zip(node_edges(r), node_edges(enc))) == 1
    assert not np.array_equal(mutant, enc)


def test_features_one_hot_per_edge():
    feats = jax.jit(jax.vmap(SPACE.features))(_sample(jax.random.key(6), 256)[:8])
    chex.assert_shape(feats, (8, SPACE.num_features))
    per_edge = np.asarray(feats).reshape(8, 16, len(OPS) + SPACE.num_nodes + 1)
    np.testing.assert_array_equal(per_edge[..., :len(OPS)].sum(-1), 1)
    np.testing.assert_array_equal(per_edge[..., len(OPS):].sum(-1), 1)


# --- genotypes ------------------------------------------------------------------------------------
def test_genotype_round_trip():
    for enc in np.asarray(_sample(jax.random.key(7), 256)[:50]):
        np.testing.assert_array_equal(SPACE.from_genotype(*SPACE.to_genotype(enc)), enc)
    # DARTS_V2_CNN comes back with each node's two edges in canonical (input-sorted) order.
    back = SPACE.to_genotype(V2)
    by_node = lambda edges: [sorted(edges[i:i + 2]) for i in range(0, len(edges), 2)]  # noqa: E731
    for cell in ("normal", "reduce"):
        assert by_node(getattr(back, cell)) == by_node(getattr(DARTS_V2_CNN, cell))
    assert back.normal_concat == back.reduce_concat == [2, 3, 4, 5]
    assert SPACE.describe(V2).startswith("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1),")


def test_genotype_strings_flat_and_nested():
    """The string DARTS repositories print (concat as range) and the per-node nested form."""
    text = repr(DARTS_V2_CNN).replace("[2, 3, 4, 5]", "range(2, 6)")
    assert "normal_concat=range(2, 6)" in text
    np.testing.assert_array_equal(SPACE.from_genotype(text), V2)
    np.testing.assert_array_equal(SPACE.from_genotype(DARTS_V2_CNN), V2)
    nested = DARTS_V2_CNN._replace(normal=[DARTS_V2_CNN.normal[i:i + 2] for i in range(0, 8, 2)],
                               reduce=[list(DARTS_V2_CNN.reduce[i:i + 2]) for i in range(0, 8, 2)])
    np.testing.assert_array_equal(SPACE.from_genotype(*nested), V2)
    np.testing.assert_array_equal(SPACE.from_genotype(repr(nested)), V2)


@pytest.mark.parametrize("text, message", [
    (repr(DARTS_V2_CNN).replace("sep_conv_3x3", "sep_conv_9x9", 1), "unknown op 'sep_conv_9x9'"),
    (repr(DARTS_V2_CNN._replace(normal=[DARTS_V2_CNN.normal[:3]] + [DARTS_V2_CNN.normal[i:i + 2] for i in (3, 5)])),
     "normal cell node 0 has 3 edges, expected 2"),
    ("Genotype(normal=__import__('os'), normal_concat=[], reduce=[], reduce_concat=[])", "not a literal"),
    ("Genotype(normal=[], reduce=[])", "missing fields"),
    ("Genotype(normal=[", "not a Python expression"),
    ("Cell(normal=[])", "expected 'Genotype"),
    (repr(DARTS_V2_CNN).replace("('sep_conv_3x3', 0)", "('sep_conv_3x3',)", 1),
     "not an \\(op name, input index\\) pair"),
])
def test_genotype_strings_errors_name_the_problem(text, message):
    with pytest.raises(InvalidEncodingError, match=message):
        SPACE.from_genotype(text)


@pytest.mark.parametrize("change, message", [
    (dict(normal=[("sep_conv_7x7", 0)] + DARTS_V2_CNN.normal[1:]), "unknown op 'sep_conv_7x7'"),
    (dict(reduce=DARTS_V2_CNN.reduce[:6]), "reduce cell has 6 edges, expected 2 per node"),
    (dict(normal_concat=[4, 5]), r"normal concat \[4, 5\]"),
    (dict(reduce=DARTS_V2_CNN.reduce[:7] + [("max_pool_3x3", 5)]), "input index 5 not available"),
])
def test_from_genotype_rejects_what_the_space_cannot_express(change, message):
    with pytest.raises(InvalidEncodingError, match=message):
        SPACE.from_genotype(*DARTS_V2_CNN._replace(**change))


# --- the network ----------------------------------------------------------------------------------
def _param_shapes(net) -> dict:
    """The `params` tree of `net` as shapes: traced, not compiled."""
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    return jax.eval_shape(net.init, jax.random.key(0), x)["params"]


def test_darts_v2_parameter_count():
    """Main network (no auxiliary head), 20 cells, 36 channels: DARTS' train.py logs 3.349342 MB for
    the same count (PyTorch parameters: conv/linear weights and biases, BN weight and bias). The module
    holds every candidate op's parameters; `nasjax.nn.param_count` counts the chosen ones."""
    shapes = _param_shapes(nasjax.nn.build(SPACE, V2))
    count = nasjax.nn.param_count(SPACE, V2, shapes)
    assert abs(count - 3.3e6) / 3.3e6 < 0.02
    assert count == 3_349_342
    assert _param_count(shapes) > 5 * count  # the supernet's
    # Another genotype, same tree: its own count (DARTS_V2_CNN's reduction cell has no convolutions).
    other = V2.copy()
    other[1, :, :, 1] = OPS.index("sep_conv_5x5")
    assert nasjax.nn.param_count(SPACE, other, shapes) > count


def test_auxiliary_head_adds_only_its_own_parameters():
    main = _param_shapes(nasjax.nn.build(SPACE, V2, **SMALL))
    with_aux = dict(_param_shapes(nasjax.nn.build(SPACE, V2, auxiliary=True, **SMALL)))
    assert "auxiliary_head" not in main
    aux = _param_count(with_aux["auxiliary_head"])
    assert aux > 0 and nasjax.nn.param_count(SPACE, V2, with_aux) == nasjax.nn.param_count(SPACE, V2, main) + aux
    with_aux.pop("auxiliary_head")
    chex.assert_trees_all_equal_shapes(with_aux, dict(main))


def _all_ops_encoding() -> tuple[DARTSSpace, np.ndarray]:
    """Every op once per cell; the reduction cell reads only the cell inputs, so every op runs at stride 2."""
    space = DARTSSpace(include_none=True)
    normal = list(zip(OPS, [0, 1, 0, 2, 1, 3, 2, 4]))
    reduce = list(zip(OPS, [0, 1] * 4))
    return space, space.from_genotype(normal, [2, 3, 4, 5], reduce, [2, 3, 4, 5])


@pytest.fixture(scope="module")
def small_net(cifar_batch, random_variables):
    """The all-ops network with the auxiliary head and drop-path 0.2: (module, variables, jitted eval
    forward (variables, rate) -> logits, jitted train forward (key, rate) -> ((logits, aux), updates))."""
    space, enc = _all_ops_encoding()
    net = nasjax.nn.build(space, enc, auxiliary=True, drop_path_rate=0.2, **SMALL)
    variables = random_variables(net, cifar_batch[:1])
    # Images and variables are arguments, not closed-over constants: XLA would spend seconds
    # constant-folding the network on them.
    evaluate = jax.jit(lambda v, x, rate: net.apply(v, x, drop_path_rate=rate))
    train = jax.jit(lambda v, x, key, rate: net.apply(v, x, train=True, drop_path_rate=rate,
                                                      rngs={"dropout": key}, mutable=["batch_stats"]))
    return (net, variables, lambda v, rate: evaluate(v, cifar_batch, rate),
            lambda key, rate: train(variables, cifar_batch, key, rate))


def test_every_op_forward_train_and_eval(small_net, cifar_batch):
    net, variables, evaluate, train = small_net
    batch = cifar_batch.shape[0]
    assert _param_count(variables["params"]["auxiliary_head"]) > 0
    logits = evaluate(variables, 0.2)  # eval: logits only
    chex.assert_shape(logits, (batch, 10))
    chex.assert_tree_all_finite(logits)
    (logits, aux), updates = train(jax.random.key(1), 0.2)
    chex.assert_shape([logits, aux], (batch, 10))
    chex.assert_tree_all_finite((logits, aux))
    assert not np.allclose(updates["batch_stats"]["stem_bn"]["mean"], 0)


def test_drop_path_only_in_training_and_deterministic(small_net):
    net, variables, evaluate, train = small_net
    a, b, c = (train(jax.random.key(k), 0.2)[0][0] for k in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # A rate of 0 (traced, as a schedule passes it) drops nothing: every key gives the same output.
    no_drop = train(jax.random.key(1), 0.0)[0][0]
    np.testing.assert_allclose(no_drop, train(jax.random.key(2), 0.0)[0][0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(a, no_drop)
    # Evaluation ignores the rate (and runs without a 'dropout' rng, which drop-path would need).
    np.testing.assert_array_equal(evaluate(variables, 0.0), evaluate(variables, 0.5))


@pytest.mark.parametrize("kwargs, message", [(dict(init_channels=7), "even"),
                                             (dict(drop_path_rate=1.0), "drop_path_rate"),
                                             (dict(layers=0), "layers")])
def test_build_rejects_bad_flags(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nasjax.nn.build(SPACE, V2, **kwargs)


# --- the genotype as data (the weight-sharing supernet) ---------------------------------------------
@pytest.mark.slow
def test_supernet_path_equals_its_standalone_network(cifar_batch, random_variables,
                                                     assert_supernet_paths_equal_standalone):
    """`nasjax.nn.supernet` (genotype traced: a scan over the edges, lax.switch per edge, hand-written
    backward) against `nasjax.nn.build` (genotype built in, ops chosen in Python, autodiff) on the same
    weights: training-mode logits, auxiliary logits, updated batch statistics and every gradient, with
    drop-path, for the all-ops genotype (every op, stride 1 and 2) and a second genotype through the same
    compiled program."""
    space, enc = _all_ops_encoding()
    space = dataclasses.replace(space, init_channels=4, layers=3)
    supernet = nasjax.nn.supernet(space, auxiliary=True, drop_path_rate=0.2)
    genotype = nasjax.nn.arch_data(space, enc)
    x = cifar_batch[:4]
    variables = random_variables(supernet, x[:1], genotype)
    second = np.asarray(space.sample(jax.random.key(8), 1)[0])
    assert_supernet_paths_equal_standalone(space, supernet, variables, x, (enc, second), auxiliary=True,
                                           drop_path_rate=0.2)
