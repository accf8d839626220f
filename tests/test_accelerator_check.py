"""experiments/accelerator_check.py at a tiny size on the suite's 4 forced CPU host devices."""

import json
import pathlib
import runpy
import types

import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.slow
def test_accelerator_check_passes_on_forced_host_devices(tmp_path, data_dir):
    out = tmp_path / "check.jsonl"
    check = types.SimpleNamespace(**runpy.run_path(str(EXPERIMENTS / "accelerator_check.py"), run_name="accelerator_check"))
    rc = check.main(["--data-dir", str(data_dir), "--archs", "2", "--train-images", "128",
                     "--eval-images", "64", "--searches", "2", "--samples", "40", "--out", str(out)])
    rows = {r["check"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rc == 0
    assert rows["machine"]["devices"] == 4
    assert rows["layout"]["ok"] and rows["layout"]["devices"] == 4
    assert rows["lanas_vmap_bitwise"]["ok"] and rows["lanas_vmap_bitwise"]["searches"] == 2
    assert rows["lanas_vmap_bitwise"]["differing_fields"] == []
    speed = rows["speed"]
    assert speed["archs"] == 2 and speed["one_by_one_s"] > 0 and speed["sharded_s"] > 0
    # Same keys, same data: the masked programs compute the same networks as the true-size ones.
    assert speed["max_val_acc_difference"] <= 2 / 64
