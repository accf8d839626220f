"""experiments/lanas_transfer.py end to end at a tiny size: the table's rows, the files, and the same
seed giving the same samples."""

import csv
import pathlib
import runpy

import pytest

pytestmark = pytest.mark.slow
SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "lanas_transfer.py"


def test_tiny_transfer_run_writes_its_table_and_repeats_itself(data_dir, tmp_path, capsys):
    main = runpy.run_path(str(SCRIPT), run_name="lanas_transfer")["main"]
    argv = ["--data-dir", str(data_dir), "--seeds", "3", "--budget", "30", "--fractions", "5", "20", "--targets", "nasbench201-cifar100"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "nasbench201-cifar10    intra" in out and "nasbench201-cifar100   inter" in out
    rows = list(csv.DictReader(open(tmp_path / "a" / "summary.csv")))
    # intra: 2 fractions x (transferred, fresh); inter: 2 transferred + 1 fresh
    assert [(r["task"], r["start"]) for r in rows].count(("intra", "fresh")) == 2 and len(rows) == 7
    assert (tmp_path / "a" / "transfer.png").stat().st_size > 0
    assert main(argv + ["--out", str(tmp_path / "b")]) == 0
    assert (open(tmp_path / "a" / "samples_to_optimum.csv").read()
            == open(tmp_path / "b" / "samples_to_optimum.csv").read())
