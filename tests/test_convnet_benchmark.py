"""The ConvNet table format (one writer, one reader), its benchmark, and the "convnet-cifar10" entry."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax import benchmarks
from nasjax.benchmarks import BenchmarkDataError, convnet
from nasjax.spaces import ConvNetSpace

SPACE = ConvNetSpace(channels=(4, 8), kernels=(3, 5), min_depth=1, max_depth=2)  # 20 networks


def random_table(space: ConvNetSpace, seeds: int = 3, epochs: int = 4, seed: int = 0) -> convnet.ConvNetTable:
    """A table in the real format with random accuracies, one failed run."""
    rng = np.random.default_rng(seed)
    members = space.enumerate()
    n = len(members)
    val = np.sort(rng.uniform(0.1, 0.6, (n, seeds, epochs)), axis=2).astype(np.float32)
    failed = np.zeros((n, seeds), bool)
    failed[3, 1] = True
    val[3, 1] = np.nan
    test = np.where(failed, np.nan, rng.uniform(0.1, 0.6, (n, seeds))).astype(np.float32)
    return convnet.ConvNetTable(
        space=space, encodings=members, val_acc=val, test_acc=test,
        train_seconds=rng.uniform(1, 2, (n, seeds)).astype(np.float32),
        params=rng.integers(100, 10_000, n).astype(np.int64), flops=rng.uniform(1e5, 1e7, n),
        failed=failed, meta={"protocol": {"epochs": epochs, "batch_size": 128, "lr": 0.05}})


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    return convnet.write_table(tmp_path_factory.mktemp("convnet") / "t.npz", random_table(SPACE))


def test_registry_knows_the_convnet_table():
    assert "convnet-cifar10" in benchmarks.LOADERS


def test_missing_table_names_the_file_and_the_build_command(tmp_path, monkeypatch):
    missing = tmp_path / "tables" / "convnet_cifar10.npz"
    monkeypatch.setattr(convnet, "DEFAULT_PATH", missing)
    with pytest.raises(BenchmarkDataError) as err:
        benchmarks.load("convnet-cifar10")
    assert str(missing) in str(err.value) and "experiments/build_convnet_table.py" in str(err.value)


@pytest.mark.parametrize("path, said", [("", "path must name a table file, got ''"),
                                         (7, "path must name a table file, got 7")])
def test_read_table_refuses_bad_paths(path, said, tmp_path):
    with pytest.raises(ValueError, match=said):
        convnet.load(path)
    with pytest.raises(ValueError, match=f"path {tmp_path} is a folder"):
        convnet.read_table(tmp_path)


def test_round_trip(table_path):
    written, read = random_table(SPACE), convnet.read_table(table_path)
    assert read.space == SPACE and (read.seeds, read.epochs) == (3, 4)
    for name in convnet.ARRAYS:
        np.testing.assert_array_equal(getattr(read, name), getattr(written, name), err_msg=name)
        assert getattr(read, name).dtype == getattr(written, name).dtype
    assert read.meta["protocol"] == written.meta["protocol"] and read.meta["format"] == convnet.FORMAT


def test_benchmark_from_the_table(table_path):
    bench = convnet.load(table_path)
    written = random_table(SPACE)
    final = 100 * written.val_acc[..., -1]
    np.testing.assert_array_equal(bench.table, final)  # the failed run is NaN there too
    np.testing.assert_array_equal(bench.curves[..., -1], bench.table)
    np.testing.assert_array_equal(bench.test_table, 100 * written.test_acc)
    enc, best = bench.optimum()
    i = int(np.nanargmax(np.nanmean(final, axis=1)))
    np.testing.assert_array_equal(enc, SPACE.enumerate()[i])
    assert best == pytest.approx(float(np.nanmean(final[i])))
    assert float(bench.query_test_mean(enc)) == pytest.approx(float(np.nanmean(100 * written.test_acc[i])))
    # query draws one of the non-failed seeds; query_at at the full budget reads the same seed.
    failed_arch = jnp.asarray(SPACE.enumerate()[3])
    keys = jax.random.split(jax.random.key(0), 64)
    drawn = np.asarray(jax.vmap(lambda k: bench.query(failed_arch, k))(keys))
    assert set(drawn.tolist()) == {float(final[3, 0]), float(final[3, 2])}
    at_full = np.asarray(jax.vmap(lambda k: bench.query_at(failed_arch, k, 4.0))(keys))
    np.testing.assert_array_equal(at_full, drawn)
    at_one = np.asarray(jax.vmap(lambda k: bench.query_at(failed_arch, k, 0.5))(keys))
    assert set(at_one.tolist()) <= {float(100 * written.val_acc[3, s, 0]) for s in (0, 2)}
    budgets = jnp.full((3,), 2.2)
    scores = bench.objective_at_budget()(jnp.asarray(SPACE.enumerate()[:3]), jax.random.key(1), budgets)
    assert all(float(s) in {float(100 * written.val_acc[r, k, 2]) for k in range(3)}
               for r, s in enumerate(np.asarray(scores)))


def test_writer_and_reader_refuse_bad_tables(tmp_path):
    t = random_table(SPACE)
    shuffled = convnet.ConvNetTable(**{**t.__dict__, "encodings": t.encodings[::-1].copy()})
    with pytest.raises(BenchmarkDataError, match="space.enumerate"):
        convnet.write_table(tmp_path / "a.npz", shuffled)
    short = convnet.ConvNetTable(**{**t.__dict__, "test_acc": t.test_acc[:, :2]})
    with pytest.raises(BenchmarkDataError, match="test_acc"):
        convnet.write_table(tmp_path / "b.npz", short)
    path = convnet.write_table(tmp_path / "c.npz", t)
    with np.load(path) as z:
        arrays = dict(z)
    arrays["meta"] = np.asarray(json.dumps({**json.loads(str(arrays["meta"])), "format": "other/0"}))
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(BenchmarkDataError, match="format"):
        convnet.read_table(tmp_path / "d.npz")
    (tmp_path / "e.npz").write_bytes(b"not a table")
    with pytest.raises(BenchmarkDataError, match="e.npz"):
        convnet.read_table(tmp_path / "e.npz")


def test_benchmarks_without_extras_say_so():
    bench = benchmarks.TabularBenchmark("t", SPACE, np.ones((SPACE.size(), 1)))
    with pytest.raises(ValueError, match="no curves"):
        bench.objective_at_budget()
    with pytest.raises(ValueError, match="no test_table"):
        bench.query_test_mean(SPACE.enumerate()[0])
