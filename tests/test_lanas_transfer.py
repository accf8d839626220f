"""experiments/lanas_transfer.py end to end at a tiny size: the table's rows, the files, the same
seed giving the same samples, and a rerun after a kill skipping the targets already written."""

import csv
import json
import pathlib
import runpy
import shutil

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
    # Killed while writing the second target's rows: the first target's rows, one of the second's and
    # half a line are all the folder holds, beside its config and data records.
    (tmp_path / "c").mkdir()
    for name in ("config.json", "data.json"):
        shutil.copy(tmp_path / "a" / name, tmp_path / "c" / name)
    lines = open(tmp_path / "a" / "rows.jsonl").readlines()
    assert [json.loads(line)["task"] for line in lines] == ["intra"] * 4 + ["inter"] * 3
    (tmp_path / "c" / "rows.jsonl").write_text("".join(lines[:5]) + lines[5][:40])
    capsys.readouterr()
    assert main(argv + ["--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "nasbench201-cifar10: finished earlier" in out and "nasbench201-cifar100: finished earlier" not in out
    for name in ("summary.csv", "samples_to_optimum.csv", "rows.jsonl"):
        assert open(tmp_path / "a" / name).read() == open(tmp_path / "c" / name).read(), name
    assert main(argv[:-1] + ["nasbench201-imagenet16", "--out", str(tmp_path / "c")]) == 2  # other flags
