"""experiments/ranking_stability.py end to end at a tiny size on the real CIFAR-10 subset."""

import pathlib
import runpy
import types

import numpy as np
import pytest

from nasjax.spaces import ConvNetSpace

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
rs = types.SimpleNamespace(**runpy.run_path(str(EXPERIMENTS / "ranking_stability.py"), run_name="ranking_stability"))
TINY = ["--archs", "3", "--channels", "8", "16", "--kernels", "3", "--max-depth", "2", "--epochs", "1",
        "--train-images", "64", "--test-images", "64"]


def test_deepen_repeats_layers_and_keeps_the_pools():
    space = ConvNetSpace(channels=(8, 16), kernels=(3, 5), max_depth=3)
    archs = np.stack([space.encode([(8, 3), (16, 5), (8, 5)]), space.encode([(16, 3)])])
    deep_space, deep = rs.deepen(space, archs, 2)
    assert deep_space.layers(deep[0]) == [(8, 3), (8, 3), (16, 5), (16, 5), (8, 5), (8, 5)]
    assert deep_space.layers(deep[1]) == [(16, 3), (16, 3)] and deep_space.pool_every == 4


def test_rank_and_compare():
    np.testing.assert_array_equal(rs.rank(np.array([50.0, np.nan, 70.0, 50.0])), [2, 4, 1, 3])
    rows = [{"acc_seed_a": a, "acc_seed_b": b, "acc_deep": d} for a, b, d in
            [(10.0, 11.0, 30.0), (20.0, 21.0, 20.0), (30.0, 32.0, 10.0)]]
    seed, depth = rs.compare(rows)
    assert seed["kendall_tau"] == pytest.approx(1.0) and depth["kendall_tau"] == pytest.approx(-1.0)
    assert seed["abs_change_max"] == 2.0 and depth["max_rank_shift"] == 2


def test_main_twice_same_numbers(tmp_path, data_dir, capsys):
    for name in ("a", "b"):
        assert rs.main([*TINY, "--out", str(tmp_path / name), "--data-dir", str(data_dir)]) == 0
    assert "Kendall tau" in capsys.readouterr().out
    for name in ("accuracies.csv", "summary.csv", "summary.md"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    assert (tmp_path / "a" / "rank_changes.png").stat().st_size > 0
    assert rs.main(["--archs", "1"]) == 2 and "--archs: must be >= 2" in capsys.readouterr().err
