"""The ConvNet table shipped in the package: it loads, covers its whole space, and re-training three
random entries with the table's stored protocol reproduces their stored accuracies bit for bit."""


import jax
import numpy as np
import pytest

from experiment_scripts import load_experiment
from nasjax import benchmarks
from nasjax.benchmarks import convnet
from nasjax.train import TrainConfig


@pytest.fixture(scope="module")
def table():
    return convnet.read_table()  # the shipped file


def test_shipped_table_loads_and_covers_the_space(table):
    bench = benchmarks.load("convnet-cifar10")
    n = table.space.size()
    assert bench.table.shape == (n, table.seeds) and table.seeds >= 2
    np.testing.assert_array_equal(table.encodings, table.space.enumerate())
    assert not table.failed.any(), "failed runs in the shipped table"
    assert np.all(np.isfinite(bench.table)) and np.all(np.isfinite(bench.test_table))
    assert np.all((bench.curves >= 0) & (bench.curves <= 100))
    assert np.all(table.params > 0) and np.all(table.flops > 0) and np.all(table.train_seconds > 0)
    build = table.meta["build"]
    assert "experiments/build_convnet_table.py" in build["command"] and build["wall_seconds"] > 0
    log = convnet.DEFAULT_PATH.with_suffix(".md")
    assert log.is_file() and build["command"] in log.read_text()


def test_retraining_three_entries_reproduces_them_bit_for_bit(table, data_dir):
    build = load_experiment("build_convnet_table")
    meta = table.meta
    if meta["training"]["backend"] != jax.default_backend():
        pytest.skip(f"table built on {meta['training']['backend']}, this is {jax.default_backend()}")
    d = meta["data"]
    data = build.protocol_data(data_dir, d["validation_fraction"], d["split_seed"], d["train_images"],
                               d["val_images"])
    assert build.data_digests(data) == d["sha256"], "the data differs from the table's"
    config = TrainConfig(**meta["protocol"])
    rng = np.random.default_rng(0)
    rows = rng.choice(len(table.encodings), 3, replace=False)
    jobs = [(int(i), int(rng.integers(table.seeds))) for i in rows]
    results = build.train_entries(table.space, jobs, data, config, meta["training"]["root_seed"],
                                  meta["training"]["execution"])
    for (i, s), r in zip(jobs, results):
        np.testing.assert_array_equal(np.float32(r.val_acc), table.val_acc[i, s], err_msg=f"row {i} seed {s}")
        assert np.float32(r.test_acc) == table.test_acc[i, s]
        assert r.params == table.params[i]
