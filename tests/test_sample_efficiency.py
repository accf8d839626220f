"""The tabular-search runner (`nasjax.experiment.tabular_search`) and experiments/sample_efficiency.py on a
tiny ConvNet benchmark with a random table."""

import dataclasses
import json
import pathlib
import runpy
import types
from math import comb

import jax
import numpy as np
import pytest

from nasjax import search
from nasjax.experiment import tabular_search as ts
from nasjax.benchmarks import TabularBenchmark
from nasjax.experiment import tabular_search
from nasjax.spaces import ConvNetSpace, NASBench101Space, NASBench201Space

SPACE = ConvNetSpace(channels=(4, 8), kernels=(3, 5), min_depth=1, max_depth=2)  # 20 networks
EPOCHS = 9


# The runner from the library, the script's own tables and files from the script (run as a module).
se = types.SimpleNamespace(**{**vars(tabular_search), **runpy.run_path(
    str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "sample_efficiency.py"),
    run_name="sample_efficiency")})


@pytest.fixture(scope="module")
def bench():
    rng = np.random.default_rng(0)
    curves = np.sort(rng.uniform(10, 60, (SPACE.size(), 2, EPOCHS)), axis=2)
    return TabularBenchmark("tiny", SPACE, curves[..., -1], curves=curves)


@pytest.fixture(scope="module")
def keys():
    return jax.random.split(jax.random.key(0), 4)


def test_random_search_covers_the_space_and_finds_the_optimum(bench, keys):
    n = SPACE.size()
    out = ts.run_strategy("random", bench, n, 1, keys)
    assert out.scores.shape == out.cost.shape == (4, n) and out.batch == 1
    for run in out.scores:  # without replacement: every member's seed mean exactly once
        np.testing.assert_array_equal(np.sort(run), np.sort(bench.scores_mean))
    _, optimum = bench.optimum()
    hit = ts.samples_to_optimum(out, optimum)
    np.testing.assert_array_equal(hit, 1 + np.argmax(out.scores == optimum, axis=1))
    band = ts.curve_band(out, n)
    assert band.shape == (3, n) and np.all(np.diff(band[1]) >= 0) and band[1, -1] == optimum
    # vmapped over keys == each key alone
    alone = ts.run_strategy("random", bench, n, 1, keys[2:3])
    np.testing.assert_array_equal(alone.scores[0], out.scores[2])


def test_hyperband_reads_curves_and_counts_full_trainings(bench, keys):
    out = ts.run_strategy("hyperband", bench, 30, 1, keys)
    assert out.scores.shape == (4, 30)
    step = np.diff(out.cost, axis=1, prepend=0)
    epochs_read = np.round(step * EPOCHS).astype(int)
    np.testing.assert_allclose(epochs_read / EPOCHS, step, atol=1e-6)
    assert set(np.unique(epochs_read)) <= {1, 3, 9} and (epochs_read < EPOCHS).any()
    # only full-budget evaluations carry a score
    np.testing.assert_array_equal(np.isfinite(out.scores), epochs_read == EPOCHS)
    assert np.all(np.isin(out.scores[np.isfinite(out.scores)], bench.scores_mean))


def test_absent_strategies_say_why_and_other_errors_are_raised(bench, keys, monkeypatch):
    final_only = TabularBenchmark("final", SPACE, bench.table)
    assert "per-epoch" in ts.run_strategy("hyperband", final_only, 10, 1, keys)
    nb201 = TabularBenchmark("nb201", NASBench201Space(), np.zeros((15_625, 1)))
    strategy, why = ts.make_strategy("mcts_global", nb201, 10)  # MCTS has NB-201 action spaces
    assert why is None and strategy.space == nb201.space
    paper, _ = ts.make_strategy("lanas_paper", nb201, 10)  # a variant row: LaNAS, the paper's Cp
    assert (paper.cp_spread, paper.cp_scale) == ("max", 0.1) and type(paper) is search.LaNAS
    # A space a strategy declares unsupported: the reason comes from the strategy.
    nb101 = types.SimpleNamespace(space=NASBench101Space(), curves=None)
    assert "has no 'global' action space" in ts.make_strategy("mcts_global", nb101, 10)[1]

    @dataclasses.dataclass(frozen=True)
    class Broken(search.Strategy):
        def __post_init__(self):
            raise ValueError("broken on purpose")

    monkeypatch.setitem(search.STRATEGIES, "broken", Broken)
    with pytest.raises(ValueError, match="broken on purpose"):
        ts.run_strategy("broken", bench, 10, 1, keys)


def test_summary_table_and_outputs(bench, keys, tmp_path):
    outcomes = {name: ts.run_strategy(name, bench, 12, 1, keys) for name in ("random", "local_search")}
    outcomes["hyperband"] = "needs per-epoch scores"
    _, optimum = bench.optimum()
    rows = ts.summarize(outcomes, optimum, SPACE.size(), 1)
    by = {r["strategy"]: r for r in rows}
    hits = ts.samples_to_optimum(outcomes["random"], optimum)
    assert by["random"]["reached"] == np.mean(np.isfinite(hits))
    median = float(np.median(hits))
    exact = ts.random_search_exact(SPACE.size(), 1)[0]
    assert by["random"]["median"] == (median if np.isfinite(median) else None)
    assert by["random"]["ratio_random_over_strategy"] == (exact / median if np.isfinite(median) else None)
    assert by["hyperband"]["absent"] and by["hyperband"]["runs"] == 0
    out = outcomes["random"]
    assert by["random"]["seconds_per_search"] == out.seconds / 4
    assert by["random"]["ms_per_sample"] == pytest.approx(1e3 * out.seconds / (4 * 12))
    assert out.seconds > 0 and out.compile_seconds > 0
    text = se.format_table(rows, 12)
    assert "not run: needs per-epoch scores" in text and "local_search" in text and "ms/sample" in text
    land = se.landscape(bench)
    assert land["seeds"] == 2 and len(land["single_seed"]) == 2 and land["seed_averaged"] >= 1
    se.write_outputs(tmp_path, outcomes, rows, optimum, 12, land, "tiny")
    for name in ("summary.csv", "curves.csv", "samples_to_optimum.csv", "best_so_far.png",
                 "samples_to_optimum.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "landscape.json").read_text())["seed_averaged"] == land["seed_averaged"]


@pytest.mark.parametrize("n, m", [(10, 1), (20, 3), (84, 2)])
def test_exact_random_search_distribution(n, m):
    cdf = [1 - comb(n - m, t) / comb(n, t) for t in range(n - m + 2)]
    median, mean = ts.random_search_exact(n, m)
    assert median == min(t for t, p in enumerate(cdf) if p >= 0.5)
    assert mean == pytest.approx(sum(1 - p for p in cdf))


def test_main_on_a_table_file(tmp_path, capsys):
    from test_convnet_benchmark import random_table

    from nasjax.benchmarks import convnet

    path = convnet.write_table(tmp_path / "table.npz", random_table(SPACE))
    assert se.main(["--benchmark", "convnet-cifar10", "--table", str(path), "--seeds", "2",
                    "--strategies", "random", "hyperband", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "2 searches x 20 samples" in printed and "Landscape:" in printed
    rows = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["random", "hyperband"]
