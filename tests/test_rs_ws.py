"""experiments/rs_ws.py: successive halving's plan and cost, and main() end to end at a tiny size."""

import csv
import pathlib
import runpy

import pytest

from nasjax.search.hyperband import halving_cost, halving_rungs

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "rs_ws.py"


@pytest.mark.parametrize("args, plan, cost", [((8, 2, 1, 4), [(8, 1), (4, 2), (2, 4)], 8 + 4 + 4),
                                              ((9, 3, 1, 9), [(9, 1), (3, 3), (1, 9)], 9 + 6 + 6),
                                              ((5, 2, 2, 2), [(5, 2)], 10)])
def test_rungs_and_cost(args, plan, cost):
    assert halving_rungs(*args) == plan and halving_cost(plan) == cost


@pytest.mark.parametrize("args", [(0, 2, 1, 2), (4, 1, 1, 2), (4, 2, 0, 2), (4, 2, 3, 2)])
def test_rungs_refuse_impossible_plans(args):
    with pytest.raises(ValueError, match="need candidates >= 1, eta >= 2"):
        halving_rungs(*args)


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
    (["--train-images", "1"], "--train-images 1 is smaller than one batch (64)"),
    (["--channels", "3"], "--channels must be even"),
    (["--layers", "0"], "--layers: must be >= 1, got 0"),
    (["--lr", "nan"], "--lr: must be a finite number > 0"),
    (["--test-images", "100000"], "--test-images 100000 exceeds"),
])
def test_bad_flags_are_one_line_before_writing(tmp_path, capsys, flags, message):
    main = runpy.run_path(str(SCRIPT), run_name="rs_ws")["main"]
    assert main([*flags, "--out", str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and not out, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # 69 s on 2 cores (two whole runs); tests/test_weight_sharing.py checks RS-WS's same-seed ranking
def test_main_tiny_twice_same_numbers(tmp_path, data_dir, capsys):
    main = runpy.run_path(str(SCRIPT), run_name="rs_ws")["main"]
    tiny = ["--candidates", "3", "--final-epochs", "2", "--train-images", "64", "--val-images", "64",
            "--test-images", "64", "--batch-size", "32", "--bn-batches", "1", "--rnas-evaluations", "6",
            "--data-dir", str(data_dir)]
    for name in ("a", "b"):
        assert main([*tiny, "--out", str(tmp_path / name)]) == 0
    assert "Kendall tau" in capsys.readouterr().out
    for name in ("candidates.csv", "summary.csv", "summary.md", "rnas.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    rows = list(csv.DictReader(open(tmp_path / "a" / "summary.csv")))
    # plan [(3, 1), (2, 2)]: 3 + 2 = 5 epochs of 64 images each; RS-WS: 3 supernet + 1 x 2 retraining;
    # RNASNet-WS: RS-WS's supernet and retraining, 6 genotypes scored (forward passes of 1 x 32 images)
    assert [int(r["training_images"]) for r in rows] == [5 * 64, 5 * 64, 5 * 64]
    assert int(rows[2]["forward_images"]) == 6 * 32
    assert len(list(csv.DictReader(open(tmp_path / "a" / "rnas.csv")))) == 6
    assert main(["--candidates", "2", "--retrain", "2", "--final-epochs", "1"]) == 2
    assert "leaves RS-WS no supernet epoch" in capsys.readouterr().err
