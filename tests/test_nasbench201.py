"""NASBench201Space, the tabular benchmark interface and the NB-201 loader on the real shared export."""

import csv

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax import benchmarks
from nasjax.benchmarks import BenchmarkDataError, TabularBenchmark, nasbench201
from nasjax.spaces import InvalidEncodingError, NASBench201Space
from nasjax.nn import build
from nasjax.nn.nasbench201 import NB201Cell
from nasjax.spaces.nasbench201 import EDGES, OPS

SPACE = NASBench201Space()
BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def csv_path(data_dir):
    return data_dir / nasbench201.FILENAME


@pytest.fixture(scope="module")
def csv_rows(csv_path):
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def bench(data_dir):
    return benchmarks.load("nasbench201-cifar10", data_dir)


# --- the space ---------------------------------------------------------------------------------
def test_enumerate_and_index_agree():
    members = SPACE.enumerate()
    chex.assert_shape(members, (15_625, 6))
    assert SPACE.size() == 15_625 == len({m.tobytes() for m in members})
    assert bool(jnp.all(jax.vmap(SPACE.is_valid)(members)))
    np.testing.assert_array_equal(jax.jit(jax.vmap(SPACE.index))(members), np.arange(15_625))


def test_string_round_trip_for_every_architecture(csv_rows):
    for enc in SPACE.enumerate():
        np.testing.assert_array_equal(SPACE.from_string(SPACE.to_string(enc)), enc)
    # The benchmark's own strings come back character for character.
    strings = [row["ArchitectureString"] for row in csv_rows]
    assert [SPACE.to_string(SPACE.from_string(s)) for s in strings] == strings


def test_string_edge_order():
    enc = SPACE.from_string("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    np.testing.assert_array_equal(enc, [3, 1, 0, 4, 2, 0])
    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    # Inputs may be listed in any order within a node.
    np.testing.assert_array_equal(
        SPACE.from_string("|nor_conv_3x3~0|+|none~1|skip_connect~0|+|none~2|avg_pool_3x3~0|nor_conv_1x1~1|"),
        enc)


def test_arch_hash_matches_the_benchmarks_unique_string(csv_rows):
    encs = [SPACE.from_string(row["ArchitectureString"]) for row in csv_rows]
    assert [SPACE.unique_string(e) for e in encs] == [row["UniqueString"] for row in csv_rows]
    by_unique, by_hash = {}, {}
    for i, (e, row) in enumerate(zip(encs, csv_rows)):
        by_unique.setdefault(row["UniqueString"], []).append(i)
        by_hash.setdefault(SPACE.arch_hash(e), []).append(i)
    assert sorted(by_unique.values()) == sorted(by_hash.values())
    assert len(by_hash) < SPACE.size()  # equivalent cells do share a hash


@pytest.mark.parametrize("bad, problem", [
    ("|nor_conv_3x3~0|+|skip_connect~0|none~1|", "2 node groups"),
    ("nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|", "start and end with '|'"),
    ("|conv_5x5~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_5x5'"),
    ("|nor_conv_3x3~0|+|skip_connect~0|none~2|+|none~0|none~1|none~2|", "input '2'"),
    ("|nor_conv_3x3~0|+|skip_connect~0|none~0|+|none~0|none~1|none~2|", "input 0 twice"),
    ("|nor_conv_3x3~0|+|skip_connect~0|+|none~0|none~1|none~2|", "1 inputs, expected 2"),
    ("|nor_conv_3x3|+|skip_connect~0|none~1|+|none~0|none~1|none~2|", "'op~input'"),
    (42, "must be a str"),
])
def test_from_string_names_the_problem(bad, problem):
    with pytest.raises(InvalidEncodingError, match=problem):
        SPACE.from_string(bad)


def test_validate_names_edge_and_op():
    with pytest.raises(InvalidEncodingError, match=r"edge 4 \(3<-1\): op id 5"):
        SPACE.validate(np.array([0, 1, 2, 3, 5, 4], np.int32))
    with pytest.raises(InvalidEncodingError, match="shape"):
        SPACE.validate(np.zeros((7,), np.int32))
    assert not bool(SPACE.is_valid(jnp.array([0, 1, 2, 3, -1, 4])))


def test_neighbors_change_exactly_one_edge():
    encs = SPACE.sample(jax.random.key(0), 16)
    nbrs, mask = jax.jit(jax.vmap(SPACE.neighbors))(encs)
    chex.assert_shape(nbrs, (16, 24, 6))
    assert bool(mask.all())
    for enc, rows in zip(np.asarray(encs), np.asarray(nbrs)):
        assert np.all((rows != enc).sum(axis=1) == 1)
        assert len({r.tobytes() for r in rows}) == 24
    mutated = jax.vmap(SPACE.mutate)(jax.random.split(jax.random.key(1), 16), encs)
    assert np.all((np.asarray(mutated) != np.asarray(encs)).sum(axis=1) == 1)


def test_sample_and_features():
    a = jax.jit(SPACE.sample, static_argnums=1)(jax.random.key(5), 512)
    chex.assert_type(a, jnp.int32)
    np.testing.assert_array_equal(a, SPACE.sample(jax.random.key(5), 512))
    assert set(np.unique(np.asarray(a))) == set(range(len(OPS)))
    feats = jax.vmap(SPACE.features)(a)
    chex.assert_shape(feats, (512, 30))
    np.testing.assert_array_equal(feats.reshape(512, 6, 5).argmax(-1), a)
    np.testing.assert_array_equal(feats.sum(-1), 6.0)


# --- the network -------------------------------------------------------------------------------
@pytest.mark.parametrize("string, connected", [
    (BEST_C10, True),
    ("|none~0|+|avg_pool_3x3~0|skip_connect~1|+|none~0|none~1|none~2|", False),  # output node is zero
])
def test_forward_on_real_cifar(cifar_batch, random_variables, string, connected):
    module = build(SPACE, SPACE.from_string(string), num_classes=10, channels=4, cells_per_stage=1)
    variables = random_variables(module, cifar_batch)
    logits, updates = module.apply(variables, cifar_batch, train=True, mutable=["batch_stats"])
    chex.assert_shape(logits, (cifar_batch.shape[0], 10))
    chex.assert_tree_all_finite(logits)
    chex.assert_trees_all_equal_shapes(updates["batch_stats"], variables["batch_stats"])
    eval_logits = module.apply(variables, cifar_batch)
    chex.assert_shape(eval_logits, (cifar_batch.shape[0], 10))
    # A cell whose output is cut from its input makes a network blind to the image.
    assert np.allclose(eval_logits[0], eval_logits[1:]) != connected


@pytest.mark.parametrize("op, millions", [("nor_conv_3x3", 1.53), ("none", 0.07)])
def test_parameter_count_matches_the_benchmark(op, millions):
    """NAS-Bench-201's CIFAR-10 networks range from 0.07 M (no conv) to 1.53 M (all conv3x3) parameters."""
    module = build(SPACE, np.full(6, OPS.index(op), np.int32))
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert round(sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"])) / 1e6, 2) == millions


@pytest.mark.parametrize("ops, expected", [
    (("none",) * 6, lambda x: jnp.zeros_like(x)),
    (("skip_connect", "none", "none", "none", "skip_connect", "none"), lambda x: x),  # 3 <- 1 <- 0
    (("none", "none", "none", "avg_pool_3x3", "none", "none"), lambda x: x),  # on a constant input
    (("skip_connect", "skip_connect", "skip_connect", "none", "none", "skip_connect"), lambda x: 2 * x),
])
def test_cell_semantics(ops, expected):
    x = jnp.ones((2, 5, 5, 3))  # constant: average pooling that ignores the padding keeps it
    y = NB201Cell(ops).apply({}, x)
    np.testing.assert_allclose(y, expected(x))


def _conv_reference(x, w, stride, pad):
    """Plain numpy convolution, x (H, W, C), w (k, k, C, O), symmetric zero padding `pad`."""
    k = w.shape[0]
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    out_h = (xp.shape[0] - k) // stride + 1
    out_w = (xp.shape[1] - k) // stride + 1
    out = np.zeros((out_h, out_w, w.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            window = xp[i * stride:i * stride + k, j * stride:j * stride + k]
            out[i, j] = np.tensordot(window, w, axes=3)
    return out


def test_reduction_block_pads_like_the_reference(random_variables):
    """NB-201's ResNet block pads its stride-2 3x3 conv by 1 on every side, as PyTorch does
    (`padding=1`): "SAME" would pad (0, 1) and shift every output by a pixel. BN at identity."""
    from nasjax.nn.nasbench201 import ResNetBasicBlock

    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 3))
    block = ResNetBasicBlock(4)
    variables = random_variables(block, x)
    p = jax.tree.map(np.asarray, variables["params"])
    bn = 1 / np.sqrt(1 + 1e-5)  # eval-mode BN with mean 0, var 1, scale 1, bias 0 (eps 1e-5)
    x0 = np.asarray(x[0], np.float64)
    y = _conv_reference(np.maximum(x0, 0), p["conv_a"]["conv"]["kernel"], 2, 1) * bn
    y = _conv_reference(np.maximum(y, 0), p["conv_b"]["conv"]["kernel"], 1, 1) * bn
    pooled = x0.reshape(4, 2, 4, 2, 3).mean(axis=(1, 3))
    shortcut = _conv_reference(pooled, p["downsample"]["kernel"], 1, 0)
    np.testing.assert_allclose(jax.jit(block.apply)(variables, x)[0], y + shortcut, rtol=1e-4, atol=1e-5)


# --- the benchmark -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, optimum", [("nasbench201-cifar10", 94.37), ("nasbench201-cifar100", 73.51),
                                           ("nasbench201-imagenet16", 47.31)])
def test_loader_finds_every_architecture_and_the_published_optimum(data_dir, name, optimum):
    b = benchmarks.load(name, data_dir)
    chex.assert_shape(b.table, (15_625, 1))
    assert np.isfinite(b.table).all() and b.n_seeds == 1
    np.testing.assert_array_equal(b.enumerate(), SPACE.enumerate())
    enc, score = b.optimum()
    assert round(score, 2) == optimum
    assert score == b.scores_mean.max() == float(b.query_mean(enc))


def test_rows_land_at_their_index(bench, csv_rows):
    for row in csv_rows[:50]:
        enc = SPACE.from_string(row["ArchitectureString"])
        assert float(bench.query_mean(enc)) == np.float32(row["CIFAR10TestAccuracy200Epochs"])
    assert SPACE.to_string(bench.optimum()[0]) == BEST_C10


def test_query_is_deterministic_and_single_seed_equals_mean(bench):
    archs = SPACE.sample(jax.random.key(2), 32)
    key = jax.random.key(3)
    noisy, mean = bench.objective(noisy=True), bench.objective(noisy=False)
    np.testing.assert_array_equal(noisy(archs, key), noisy(archs, key))
    np.testing.assert_array_equal(noisy(archs, key), mean(archs, jax.random.key(4)))
    np.testing.assert_array_equal(mean(archs, key), bench.scores_mean[np.asarray(jax.vmap(SPACE.index)(archs))])
    assert np.isnan(float(bench.query(jnp.array([0, 0, 0, 0, 0, 7]), key)))


def test_objective_vmaps_over_seeds(bench):
    keys = jax.random.split(jax.random.key(0), 3)
    archs = jax.vmap(lambda k: SPACE.sample(k, 8))(keys)
    objective = bench.objective()
    scores = jax.jit(jax.vmap(objective))(archs, keys)
    chex.assert_shape(scores, (3, 8))
    for a, k, s in zip(archs, keys, scores):
        np.testing.assert_array_equal(s, objective(a, k))


def test_query_draws_among_present_seeds():
    table = np.tile(np.array([[1.0, np.nan, 3.0]], np.float32), (SPACE.size(), 1))
    table[7] = np.nan
    b = TabularBenchmark("toy", SPACE, table)
    enc = SPACE.enumerate()[0]
    draw = jax.jit(jax.vmap(b.query, in_axes=(None, 0)))
    draws = np.asarray(draw(enc, jax.random.split(jax.random.key(0), 200)))
    assert set(draws.tolist()) == {1.0, 3.0}
    np.testing.assert_array_equal(draws, draw(enc, jax.random.split(jax.random.key(0), 200)))
    assert float(b.query_mean(enc)) == 2.0
    assert np.isnan(float(b.query(SPACE.enumerate()[7], jax.random.key(1))))
    assert np.isnan(b.scores_mean[7]) and b.optimum()[1] == 2.0
    with pytest.raises(ValueError):
        b.table[0, 0] = 5.0  # read-only


def test_table_shape_is_checked():
    with pytest.raises(BenchmarkDataError, match=r"\(15625, n_seeds >= 1\)"):
        TabularBenchmark("toy", SPACE, np.zeros((100, 1)))


# --- loader errors -----------------------------------------------------------------------------
def _write(tmp_path, lines):
    path = tmp_path / nasbench201.FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return tmp_path


@pytest.fixture(scope="module")
def csv_lines(csv_path):
    with open(csv_path, newline="") as f:
        return f.readlines()


def _replace_field(line, index, value):
    fields = next(csv.reader([line]))
    fields[index] = value
    return ",".join(fields) + "\n"


@pytest.mark.parametrize("edit, problem", [
    (lambda ls: [ls[0].replace("CIFAR10TestAccuracy200Epochs", "Acc")] + ls[1:], "missing column.*CIFAR10Test"),
    (lambda ls: ls[:-1], "15624 architectures, expected 15625"),
    (lambda ls: ls[:-1] + [ls[1]], ":15626: architecture .* repeats line 2"),
    (lambda ls: ls[:3] + [_replace_field(ls[3], 0, "n/a")] + ls[4:], ":4: CIFAR10TestAccuracy200Epochs value 'n/a'"),
    (lambda ls: ls[:3] + [_replace_field(ls[3], 0, "123.0")] + ls[4:], ":4: .* not an accuracy"),
    (lambda ls: ls[:5] + [_replace_field(ls[5], 3, "|bad~0|+|none~0|none~1|+|none~0|none~1|none~2|")] + ls[6:],
     ":6: .*unknown op 'bad'"),
    (lambda ls: ls[:2] + [ls[2].rstrip("\n") + ",extra\n"] + ls[3:], ":3: row has 6 fields, the header has 5"),
])
def test_loader_names_corrupt_data(tmp_path, csv_lines, edit, problem):
    data_dir = _write(tmp_path, edit(list(csv_lines)))
    with pytest.raises(BenchmarkDataError, match=problem):
        benchmarks.load("nasbench201-cifar10", data_dir)


def test_loader_names_missing_data(tmp_path, monkeypatch):
    with pytest.raises(BenchmarkDataError, match="not found at"):
        benchmarks.load("nasbench201-cifar100", tmp_path)
    monkeypatch.delenv("NASJAX_DATA_DIR")
    with pytest.raises(BenchmarkDataError, match="NASJAX_DATA_DIR"):
        benchmarks.load("nasbench201-cifar10")
    with pytest.raises(ValueError, match="unknown benchmark 'nb201'.*nasbench201-cifar10"):
        benchmarks.load("nb201")
    with pytest.raises(ValueError, match="unknown NB-201 dataset"):
        nasbench201.read_table(tmp_path, "svhn")
