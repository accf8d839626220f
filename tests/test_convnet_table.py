"""The ConvNet table shipped in the package: it loads, covers its whole space, and re-training three
random entries with the table's stored protocol reproduces their stored accuracies
(`build_convnet_table.py --verify 3`: entries of the cheaper half by FLOPs, about a minute): bit for bit
on the CPU model that built it, within 0.02 on another (XLA:CPU compiles for the CPU's features)."""


import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from nasjax import benchmarks, runtime
from nasjax.benchmarks import convnet

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


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


@pytest.mark.slow
def test_retraining_three_entries_reproduces_them(table, data_dir):
    training = table.meta["training"]
    if training["backend"] != jax.default_backend():
        pytest.skip(f"table built on {training['backend']}, this is {jax.default_backend()}")
    # The build script's --verify in a fresh process with the build's device count: XLA:CPU's
    # convolutions sum in an order that depends on the device layout, and this suite forces several.
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={training['devices']}"}
    proc = subprocess.run([sys.executable, str(EXPERIMENTS / "build_convnet_table.py"), "--verify", "3",
                           "--data-dir", str(data_dir)], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exact = training.get("cpu") == runtime.cpu_identity()
    agreed = proc.stdout.count(": reproduced:") + (0 if exact else proc.stdout.count(": within tolerance"))
    assert agreed == 3, proc.stdout
