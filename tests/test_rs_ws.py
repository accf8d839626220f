"""experiments/rs_ws.py: successive halving's plan and cost, and main() end to end at a tiny size."""

import csv

import pytest
from experiment_scripts import load_experiment

rs = load_experiment("rs_ws")


@pytest.mark.parametrize("args, plan, cost", [((8, 2, 1, 4), [(8, 1), (4, 2), (2, 4)], 8 + 4 + 4),
                                              ((9, 3, 1, 9), [(9, 1), (3, 3), (1, 9)], 9 + 6 + 6),
                                              ((5, 2, 2, 2), [(5, 2)], 10)])
def test_rungs_and_cost(args, plan, cost):
    assert rs.rungs(*args) == plan and rs.halving_cost(plan) == cost


@pytest.mark.slow  # 69 s on 2 cores (two whole runs); tests/test_weight_sharing.py checks RS-WS's same-seed ranking
def test_main_tiny_twice_same_numbers(tmp_path, data_dir, capsys):
    tiny = ["--candidates", "3", "--final-epochs", "2", "--train-images", "64", "--val-images", "64",
            "--test-images", "64", "--batch-size", "32", "--bn-batches", "1", "--rnas-evaluations", "6",
            "--data-dir", str(data_dir)]
    for name in ("a", "b"):
        assert rs.main([*tiny, "--out", str(tmp_path / name)]) == 0
    assert "Kendall tau" in capsys.readouterr().out
    for name in ("candidates.csv", "summary.csv", "summary.md", "rnas.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    rows = list(csv.DictReader(open(tmp_path / "a" / "summary.csv")))
    # plan [(3, 1), (2, 2)]: 3 + 2 = 5 epochs of 64 images each; RS-WS: 3 supernet + 1 x 2 retraining;
    # RNASNet-WS: RS-WS's supernet and retraining, 6 genotypes scored (forward passes of 1 x 32 images)
    assert [int(r["training_images"]) for r in rows] == [5 * 64, 5 * 64, 5 * 64]
    assert int(rows[2]["forward_images"]) == 6 * 32
    assert len(list(csv.DictReader(open(tmp_path / "a" / "rnas.csv")))) == 6
    assert rs.main(["--candidates", "2", "--retrain", "2", "--final-epochs", "1"]) == 2
    assert "leaves RS-WS no supernet epoch" in capsys.readouterr().err
