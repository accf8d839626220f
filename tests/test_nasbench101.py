"""NASBench101Space: official validity, pruning and hash; sampling; neighbours; the network."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax.nn import build
from nasjax.nn.nasbench101 import vertex_channels
from nasjax.spaces import InvalidEncodingError, NotEnumerableError
from nasjax.spaces.nasbench101 import NASBench101Space, hash_module

SPACE = NASBench101Space()
C3, C1, MP = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"

# Published pairs, each from the official data: the first is the dataset's first key (the NNI
# benchmark docs and several test suites show this cell for it) with its stored parameter count; the
# second is the README's Inception-like cell with the parameter count the official colab printed.
KEY_CELL = ([[0, 1, 0, 0, 1, 1, 0],
             [0, 0, 1, 0, 0, 0, 0],
             [0, 0, 0, 1, 0, 0, 1],
             [0, 0, 0, 0, 0, 1, 0],
             [0, 0, 0, 0, 0, 1, 0],
             [0, 0, 0, 0, 0, 0, 1],
             [0, 0, 0, 0, 0, 0, 0]], ["input", C3, MP, C3, C3, C1, "output"])
KEY_HASH, KEY_PARAMS = "00005c142e6f48ac74fdcf73e3439874", 8_555_530
INCEPTION = ([[0, 1, 1, 1, 0, 1, 0],
              [0, 0, 0, 0, 0, 0, 1],
              [0, 0, 0, 0, 0, 0, 1],
              [0, 0, 0, 0, 1, 0, 0],
              [0, 0, 0, 0, 0, 0, 1],
              [0, 0, 0, 0, 0, 0, 1],
              [0, 0, 0, 0, 0, 0, 0]], ["input", C1, C3, C3, C3, MP, "output"])
INCEPTION_PARAMS = 2_694_282
# How the dataset stores the Inception-like cell (the colab's query printed this isomorphic form).
INCEPTION_STORED = ([[0, 1, 1, 1, 1, 0, 0],
                     [0, 0, 0, 0, 0, 0, 1],
                     [0, 0, 0, 0, 0, 0, 1],
                     [0, 0, 0, 0, 0, 0, 1],
                     [0, 0, 0, 0, 0, 1, 0],
                     [0, 0, 0, 0, 0, 0, 1],
                     [0, 0, 0, 0, 0, 0, 0]], ["input", C3, C1, MP, C3, C3, "output"])


def reference_prune(matrix):
    """Vertices kept by the official `ModelSpec._prune` (DFS from the input and back from the output)."""
    v = len(matrix)

    def reach(start, step):
        seen, frontier = {start}, [start]
        while frontier:
            u = frontier.pop()
            for w in step(u):
                if w not in seen:
                    seen.add(w)
                    frontier.append(w)
        return seen

    forward = reach(0, lambda u: [w for w in range(v) if matrix[u][w]])
    backward = reach(v - 1, lambda u: [w for w in range(v) if matrix[w][u]])
    return sorted(forward & backward)


def reference_is_valid(enc):
    """The official API's `is_valid` on an encoding: 0/1 bits, ops in range, and after pruning the
    input still reaches the output through at most 9 edges."""
    bits, op_ids = np.asarray(enc[:21]), np.asarray(enc[21:])
    if not (np.isin(bits, [0, 1]).all() and ((op_ids >= 0) & (op_ids < 3)).all()):
        return False
    m = np.zeros((7, 7), int)
    m[np.triu_indices(7, 1)] = bits
    kept = reference_prune(m)
    return 0 in kept and 6 in kept and int(m[np.ix_(kept, kept)].sum()) <= 9


def relabel(matrix, ops, order):
    """The same cell with vertex i renamed order[i]."""
    m, out, new_ops = np.asarray(matrix), np.zeros((7, 7), int), list(ops)
    for i in range(7):
        new_ops[order[i]] = ops[i]
        for j in range(7):
            out[order[i], order[j]] = m[i, j]
    return out, new_ops


def random_topological_order(matrix, rng):
    """order[i] = position of vertex i in a random order that keeps every edge pointing forward
    (input first, output last)."""
    m, placed, order = np.asarray(matrix), [0], {0: 0}
    while len(placed) < 6:
        ready = [u for u in range(1, 6)
                 if u not in order and all(w in order for w in np.flatnonzero(m[:, u]))]
        u = int(rng.choice(ready))
        order[u] = len(placed)
        placed.append(u)
    order[6] = 6
    return [order[i] for i in range(7)]


def param_count(module):
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


@pytest.fixture(scope="module")
def raw():
    """20,000 raw draws (uniform bits and ops) and whether each is valid (jitted is_valid)."""
    draws = jax.jit(jax.vmap(SPACE._candidate))(jax.random.split(jax.random.key(9), 20_000))
    return np.asarray(draws), np.asarray(jax.jit(jax.vmap(SPACE.is_valid))(draws))


@pytest.fixture(scope="module")
def samples():
    """(keys (20,), int32 (20, 200, 26)): `sample(key, 200)` for each key, jitted and vmapped."""
    keys = jax.random.split(jax.random.key(5), 20)
    return keys, np.asarray(jax.jit(jax.vmap(lambda k: SPACE.sample(k, 200)))(keys))


# --- validation ---------------------------------------------------------------------------------------
def key_enc():
    return SPACE.encode(*KEY_CELL)


@pytest.mark.parametrize("edit, message", [
    (lambda e: e[:-1], "shape"),
    (lambda e: np.concatenate([e, [0]]), "shape"),
    (lambda e: np.where(np.arange(26) == 25, 3, e), "op id 3 out of range"),
    (lambda e: np.where(np.arange(26) == 21, -1, e), "op id -1 out of range"),
    (lambda e: np.where(np.arange(26) == 0, 2, e), "adjacency entry 0->1 is 2"),
    # Every edge out of the input removed: nothing reaches the output.
    (lambda e: np.where(np.arange(26) < 6, 0, e), "disconnected cell"),
    # Two more edges on input->output paths: 11 after pruning.
    (lambda e: np.where(np.isin(np.arange(26), [1, 5]), 1, e), "too many edges: 11 after pruning"),
])
def test_validate_names_the_problem(edit, message):
    bad = np.asarray(edit(key_enc()), np.int32)
    with pytest.raises(InvalidEncodingError, match=message):
        SPACE.validate(bad)
    if bad.shape == SPACE.encoding_shape:
        assert not bool(SPACE.is_valid(bad))


def test_is_valid_matches_the_official_rule_on_random_raw_cells(raw):
    draws, valid = raw[0][:3000], raw[1][:3000]
    expected = np.array([reference_is_valid(r) for r in draws])
    np.testing.assert_array_equal(valid, expected)
    np.testing.assert_array_equal(valid, [not SPACE.validation_errors(r.astype(np.int64)) for r in draws])
    assert 0.5 < expected.mean() < 0.95  # both outcomes occur; about 3 in 4 raw cells are valid


def test_extraneous_vertices_are_allowed_and_pruned_like_the_official_api():
    ops = ["input", C3, C1, MP, C3, C3, "output"]
    base = np.zeros((7, 7), int)
    base[0, 1] = base[1, 6] = base[0, 6] = 1
    extra = base.copy()
    extra[1, 2] = 1  # vertex 2: reached from the input, reaches nothing
    extra[3, 4] = extra[4, 6] = 1  # vertices 3, 4: reach the output, unreachable from the input
    assert reference_prune(extra) == [0, 1, 6]
    enc_base, enc_extra = SPACE.encode(base, ops), SPACE.encode(extra, ops)
    np.testing.assert_array_equal(np.flatnonzero(SPACE.kept_vertices(enc_extra)), [0, 1, 6])
    for enc in enc_base, enc_extra:
        pruned, names = SPACE.spec(enc)
        np.testing.assert_array_equal(pruned, [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
        assert names == ["input", C3, "output"]
    assert SPACE.arch_hash(enc_extra) == SPACE.arch_hash(enc_base)
    # The op of a pruned vertex is part of the encoding, not of the network.
    other = enc_extra.copy()
    other[21 + 2] = (other[21 + 2] + 1) % 3
    assert SPACE.arch_hash(other) == SPACE.arch_hash(enc_extra)


def test_the_edge_limit_applies_after_pruning():
    m = np.zeros((7, 7), int)
    for s, t in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 4), (2, 3), (3, 4), (4, 6), (2, 6)]:
        m[s, t] = 1  # 9 edges, every one on an input->output path
    ops = ["input"] + [C3] * 5 + ["output"]
    m[0, 5] = m[1, 5] = 1  # vertex 5 leads nowhere: 11 raw edges, 9 after pruning
    enc = SPACE.encode(m, ops)
    assert int(np.asarray(SPACE.adjacency(enc)).sum()) == 11 and int(SPACE.num_pruned_edges(enc)) == 9
    assert bool(SPACE.is_valid(enc))
    m[0, 4] = 1  # a tenth edge on a path
    with pytest.raises(InvalidEncodingError, match="too many edges: 10 after pruning"):
        SPACE.encode(m, ops)


# --- hash -------------------------------------------------------------------------------------------------
def test_hash_equals_the_official_dataset_key():
    assert SPACE.arch_hash(SPACE.encode(*KEY_CELL)) == KEY_HASH


@pytest.mark.parametrize("order", [[0, 2, 1, 3, 4, 5, 6], [0, 5, 2, 3, 4, 1, 6], [0, 1, 5, 2, 3, 4, 6]])
def test_hash_is_equal_for_permuted_isomorphic_cells(order):
    m, ops = relabel(*INCEPTION, order)
    assert np.all(np.tril(m) == 0), "the test permutation must keep the matrix upper triangular"
    assert not np.array_equal(SPACE.encode(m, ops), SPACE.encode(*INCEPTION))
    assert SPACE.arch_hash(SPACE.encode(m, ops)) == SPACE.arch_hash(SPACE.encode(*INCEPTION))


def test_hash_is_equal_for_random_relabellings_of_sampled_cells(samples):
    rng = np.random.default_rng(0)
    for enc in samples[1][1, :30]:
        matrix, ops = SPACE.decode(enc)
        m, new_ops = relabel(matrix, ops, random_topological_order(matrix, rng))
        assert SPACE.arch_hash(SPACE.encode(m, new_ops)) == SPACE.arch_hash(enc)


def test_hash_matches_the_datasets_stored_isomorph_and_separates_different_cells():
    inception = SPACE.arch_hash(SPACE.encode(*INCEPTION))
    assert SPACE.arch_hash(SPACE.encode(*INCEPTION_STORED)) == inception
    other_op = INCEPTION[1][:5] + [C1, "output"]
    assert SPACE.arch_hash(SPACE.encode(INCEPTION[0], other_op)) != inception
    m = np.array(INCEPTION[0])
    m[0, 5], m[0, 6] = 0, 1  # the max-pool branch replaced by an input->output edge
    assert SPACE.arch_hash(SPACE.encode(m, INCEPTION[1])) != inception
    assert inception != KEY_HASH


def test_hash_module_separates_the_official_tricky_cases():
    # From nasbench/tests/graph_util_test.py: equal-degree chains that differ in label order.
    chain = np.eye(5, k=1, dtype=int)
    assert hash_module(chain, [-1, 1, 0, 0, -2]) != hash_module(chain, [-1, 0, 0, 1, -2])


def test_encode_pads_a_pruned_cell_to_the_same_network():
    pruned, names = SPACE.spec(SPACE.encode(*KEY_CELL))
    np.testing.assert_array_equal(pruned, KEY_CELL[0])
    m = np.array([[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    small = SPACE.encode(m, ["input", MP, C1, "output"])
    np.testing.assert_array_equal(SPACE.spec(small)[0], m)
    assert SPACE.spec(small)[1] == ["input", MP, C1, "output"]
    matrix, ops = SPACE.decode(small)
    assert matrix.shape == (7, 7) and ops[0] == "input" and ops[-1] == "output"
    np.testing.assert_array_equal(SPACE.encode(matrix, ops), small)


@pytest.mark.parametrize("matrix, ops, message", [
    (np.ones((7, 7), int), ["input"] + [C3] * 5 + ["output"], "upper triangular"),
    (np.eye(7, k=1, dtype=int), ["input"] + [C3] * 4 + ["conv5x5", "output"], "unknown op 'conv5x5'"),
    (np.eye(7, k=1, dtype=int), [C3] * 7, "first op must be 'input'"),
    (np.eye(8, k=1, dtype=int), ["input"] + [C3] * 6 + ["output"], "2..7 vertices"),
])
def test_encode_rejects_bad_specs(matrix, ops, message):
    with pytest.raises(InvalidEncodingError, match=message):
        SPACE.encode(matrix, ops)


# --- sampling, neighbours, features --------------------------------------------------------------------
def test_sample_is_deterministic_valid_and_vmaps_over_keys(samples):
    keys, batched = samples
    chex.assert_shape(batched, (20, 200, 26))
    single = jax.jit(SPACE.sample, static_argnums=1)(keys[1], 200)
    chex.assert_type(single, jnp.int32)
    np.testing.assert_array_equal(batched[1], single)
    assert not np.array_equal(batched[0], batched[1])
    flat = batched[:3].reshape(-1, 26)
    SPACE.validate(flat)
    assert all(reference_is_valid(r) for r in flat)


def test_sample_is_uniform_over_valid_encodings(raw, samples):
    """Among valid encodings the op ids are uniform and independent of the graph; the raw edge count
    follows the same law as in raw draws conditioned on validity."""
    draws, valid = raw
    sampled = samples[1].reshape(-1, 26)
    assert bool(jnp.all(jax.jit(jax.vmap(SPACE.is_valid))(sampled)))
    edges_expected = np.bincount(draws[valid, :21].sum(1), minlength=22) / valid.sum()
    edges_sampled = np.bincount(sampled[:, :21].sum(1), minlength=22) / len(sampled)
    assert np.abs(edges_expected - edges_sampled).max() < 0.03
    ops_sampled = np.bincount(sampled[:, 21:].ravel(), minlength=3) / sampled[:, 21:].size
    np.testing.assert_allclose(ops_sampled, 1 / 3, atol=0.02)


def test_neighbors_are_every_valid_single_edit(samples):
    encs = samples[1][2, :6]
    keys = jax.random.split(jax.random.key(3), 6)
    # One program for both (mutate builds the neighbours too): each compile costs seconds.
    both = jax.jit(lambda k, e: (jax.vmap(SPACE.neighbors)(e), jax.vmap(SPACE.mutate)(k, e)))
    (nbrs, mask), mutated = both(keys, encs)
    chex.assert_shape(nbrs, (6, 31, 26))
    for enc, rows, m in zip(np.asarray(encs), np.asarray(nbrs), np.asarray(mask)):
        diffs = (rows != enc).sum(1)
        np.testing.assert_array_equal(diffs, 1)
        np.testing.assert_array_equal(m, [reference_is_valid(r) for r in rows])
        assert m[21:].all()  # op changes never break validity
        assert len({r.tobytes() for r in rows}) == 31
    assert all(reference_is_valid(r) for r in np.asarray(mutated))
    np.testing.assert_array_equal((np.asarray(mutated) != np.asarray(encs)).sum(1), 1)


def test_features_are_bits_and_one_hot_ops():
    enc = SPACE.encode(*KEY_CELL)
    feats = np.asarray(jax.jit(SPACE.features)(enc))
    chex.assert_shape(feats, (SPACE.num_features,))
    np.testing.assert_array_equal(feats[:21], enc[:21])
    np.testing.assert_array_equal(feats[21:].reshape(5, 3).argmax(1), enc[21:])
    assert feats[21:].sum() == 5


def test_size_is_unknown_and_enumerate_refuses():
    assert SPACE.size() is None
    with pytest.raises(NotEnumerableError):
        SPACE.enumerate()


def test_describe_names_edges_and_ops():
    text = SPACE.describe(SPACE.encode(*KEY_CELL))
    assert "9 edges" in text and "2:maxpool3x3" in text and "5->6" in text


# --- the network ----------------------------------------------------------------------------------------
def test_vertex_channels_split_the_output_and_never_grow():
    m = np.array(INCEPTION[0])
    # Four vertices feed the output: 128 / 4 each; vertex 3 feeds vertex 4 only and takes its width.
    assert vertex_channels(64, 128, m) == [64, 32, 32, 32, 32, 32, 128]
    assert vertex_channels(64, 130, m) == [64, 33, 33, 32, 32, 32, 130]


@pytest.mark.parametrize("cell, expected", [(KEY_CELL, KEY_PARAMS), (INCEPTION, INCEPTION_PARAMS)])
def test_full_network_parameter_count_matches_the_official_figure(cell, expected):
    assert param_count(build(SPACE, SPACE.encode(*cell))) == expected


def test_sampled_network_trains_on_real_cifar(samples, cifar_batch, random_variables):
    """Training mode updates every BatchNorm (the eval forward of every space: test_spaces.py)."""
    module = build(SPACE, samples[1][3, 0], num_classes=10, stem_channels=8, cells_per_stack=1)
    variables = random_variables(module, cifar_batch)
    logits, updates = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, cifar_batch)
    chex.assert_shape(logits, (cifar_batch.shape[0], 10))
    chex.assert_tree_all_finite(logits)
    assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(variables["batch_stats"])
    assert not any(np.allclose(u, v) for u, v in zip(jax.tree.leaves(updates["batch_stats"]),
                                                      jax.tree.leaves(variables["batch_stats"])))


def test_input_to_output_only_cell_is_a_projection(cifar_batch, random_variables):
    enc = SPACE.encode(np.array([[0, 1], [0, 0]]), ["input", "output"])
    module = build(SPACE, enc, stem_channels=8, num_stacks=2, cells_per_stack=1)
    variables = random_variables(module, cifar_batch)
    assert set(variables["params"]["stack1_cell0"]) == {"proj_out"}
    chex.assert_shape(jax.jit(module.apply)(variables, cifar_batch), (cifar_batch.shape[0], 10))
