"""experiments/ri_benchmark.py end to end at a tiny size on the real data (NB-201, CIFAR-10 subset)."""

import functools
import pathlib
import runpy
import types

import pytest

from nasjax import metrics

TINY = ["--datasets", "cifar10", "--seeds", "3", "--budgets", "2", "4", "--strategies", "random", "hyperband",
        "--space", "tiny", "--strategies-trained", "evolution", "--search-seeds", "1", "--budget", "2",
        "--batch", "2", "--top-k", "1", "--train-images", "64", "--val-images", "64", "--batch-size", "64",
        "--final-train-images", "64", "--test-images", "64"]

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
ri = types.SimpleNamespace(**runpy.run_path(str(EXPERIMENTS / "ri_benchmark.py"), run_name="ri_benchmark"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    """run(name): the folder of a run with the same seed, run on first use (the default suite needs one)."""
    @functools.cache
    def run(name: str) -> pathlib.Path:
        out = tmp_path_factory.mktemp("ri") / name
        assert ri.main([*TINY, "--out", str(out), "--data-dir", str(data_dir)]) == 0
        return out
    return run


def test_tables_files_and_same_bits(run, capsys):
    a, b = run("a"), run("b")
    for name in ("tabular.csv", "trained.csv", "summary.md"):
        assert (a / name).read_text() == (b / name).read_text(), name
    for name in ("tabular.png", "trained.png", "timing.csv"):
        assert (a / name).stat().st_size > 0
    summary = (a / "summary.md").read_text()
    assert "random sampling, exact best-of-k" in summary and "hyperband | skipped" in summary
    assert "top-1 found by evolution" in summary and "sampled at random" in summary


def test_tabular_rows_against_the_exact_baseline(run):
    import csv

    from nasjax import benchmarks
    rows = list(csv.DictReader(open(run("a") / "tabular.csv")))
    scores = benchmarks.load("nasbench201-cifar10").scores_mean
    done = [r for r in rows if not r["skipped"]]
    assert [(r["strategy"], r["budget"]) for r in done] == [("random", "2"), ("random", "4")]
    for r in done:
        mean, std = metrics.best_of_k_mean_std(scores, int(r["budget"]))
        assert float(r["random_best_of_k_mean"]) == pytest.approx(mean)
        assert float(r["ri_mean"]) == pytest.approx(100 * (float(r["acc_mean"]) - mean) / mean, abs=1e-4)


def test_bad_flags_are_one_line_errors(capsys):
    assert ri.main(["--budgets", "0"]) == 2
    assert "--budgets: must be in [1, 15625], got 0" in capsys.readouterr().err
    assert ri.main(["--top-k", "9", "--budget", "4"]) == 2
    assert ri.main(["--strategies", "nope"]) == 2
