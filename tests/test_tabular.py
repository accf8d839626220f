"""TabularBenchmark's objectives: the same scores as the queries, with the tables passed to the
compiled programs as arguments rather than copied into them as constants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax import benchmarks
from nasjax.benchmarks import TabularBenchmark
from nasjax.benchmarks import tabular
from nasjax.spaces import ConvNetSpace

SPACE = ConvNetSpace(channels=(16, 32), kernels=(3, 5), max_depth=3)  # 84 networks


def test_objectives_take_the_tables_as_arguments():
    rng = np.random.default_rng(0)
    curves = np.sort(rng.uniform(size=(SPACE.size(), 3, 5)), axis=2).astype(np.float32)
    bench = TabularBenchmark("t", SPACE, curves[..., -1], curves=curves)
    archs, key = jnp.asarray(SPACE.enumerate()[::7]), jax.random.key(0)
    budgets = jnp.arange(len(archs), dtype=jnp.float32) % 5 + 1
    keys = jax.random.split(key, len(archs))
    np.testing.assert_array_equal(bench.objective()(archs, key), jax.vmap(bench.query)(archs, keys))
    np.testing.assert_array_equal(bench.objective(noisy=False)(archs, key),
                                  jax.vmap(bench.query_mean)(archs))
    np.testing.assert_array_equal(bench.objective_at_budget()(archs, key, budgets),
                                  jax.vmap(bench.query_at)(archs, keys, budgets))
    table, means, curves = (bench._device[k] for k in ("table", "scores_mean", "curves"))
    programs = [tabular._noisy_scores.lower(SPACE, table, archs, key),
                tabular._mean_scores.lower(SPACE, means, archs),
                tabular._scores_at_budget.lower(SPACE, table, curves, archs, key, budgets)]
    for program in programs:
        constants = [line for line in program.as_text().splitlines() if "stablehlo.constant" in line]
        assert not [c for c in constants if "84x" in c], "a table was compiled in as a constant"


@pytest.mark.parametrize("name, data_dir, said", [
    (["nasbench201-cifar10"], None, "unknown benchmark"),
    ("nasbench201-nope", None, "unknown benchmark 'nasbench201-nope'"),
    ("nasbench201-cifar10", "", "data_dir must name a folder, got ''"),
    ("nasbench201-cifar10", 3, "data_dir must name a folder, got 3"),
    ("nasbench101", "", "data_dir must name a folder"),
])
def test_loads_refuse_bad_arguments(name, data_dir, said):
    with pytest.raises(ValueError, match=said):
        benchmarks.load(name, data_dir)


def test_loads_refuse_a_file_as_data_dir(tmp_path):
    (tmp_path / "f").write_text("")
    for name in ("nasbench201-cifar10", "nasbench101"):
        with pytest.raises(ValueError, match=f"data_dir {tmp_path / 'f'} is a file"):
            benchmarks.load(name, tmp_path / "f")
