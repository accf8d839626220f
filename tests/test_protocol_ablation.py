"""experiments/protocol_ablation.py end to end at a tiny size on the real CIFAR-10 subset."""

import csv
import pathlib
import runpy
import types

import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
pa = types.SimpleNamespace(**runpy.run_path(str(EXPERIMENTS / "protocol_ablation.py"), run_name="protocol_ablation"))
TINY = ["--archs", "2", "--protocols", "base", "+drop-path", "--layers", "3", "--channels", "4",
        "--batch-size", "32", "--train-images", "64", "--test-images", "64"]


def test_protocols_are_cumulative_presets():
    args = pa.parse_args(["--epochs", "2", "--channels", "36"])
    networks, configs = zip(*(pa.protocol_config(name, args) for name in pa.PROTOCOLS))
    configs = dict(zip(pa.PROTOCOLS, configs))
    assert configs["base"].cutout == 0 and configs["+cutout"].cutout == 16
    assert configs["+drop-path"].drop_path == 0.2 and configs["+auxiliary"].auxiliary_weight == 0.4
    assert configs["+autoaugment"].autoaugment and configs["+autoaugment"].epochs == 2
    assert configs["+longer"].epochs == 5 and configs["+channels"].epochs == 5
    assert [n.init_channels for n in networks] == [36] * 6 + [50]


@pytest.mark.slow
def test_main_twice_same_numbers(tmp_path, data_dir, capsys):
    for name in ("a", "b"):
        assert pa.main([*TINY, "--out", str(tmp_path / name), "--data-dir", str(data_dir)]) == 0
    assert "Spread of the protocol means" in capsys.readouterr().out
    for name in ("runs.csv", "summary.csv", "summary.md"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    rows = list(csv.DictReader(open(tmp_path / "a" / "runs.csv")))
    assert [(r["protocol"], r["arch"]) for r in rows] == [("base", "0"), ("base", "1"), ("+drop-path", "0"),
                                                         ("+drop-path", "1")]
    assert all(0 <= float(r["test_acc"]) <= 100 for r in rows)
    assert (tmp_path / "a" / "protocols.png").stat().st_size > 0


@pytest.mark.parametrize("bad", [["--layers", "2"], ["--protocols", "nope"], ["--longer", "0.5"]])
def test_bad_flags(bad, capsys):
    assert pa.main(bad) == 2
    assert "error:" in capsys.readouterr().err
