"""experiments/build_convnet_table.py on a one-network space: table + log, resume after a torn write
gives the same bits, a different configuration in the same workdir is refused, --verify reproduces an
entry and catches a tampered one."""

import dataclasses
import pathlib
import runpy
import types

import numpy as np

from nasjax.benchmarks import convnet

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "build_convnet_table.py"
build = types.SimpleNamespace(**runpy.run_path(str(SCRIPT), run_name="build_convnet_table"))
TINY = ["--max-depth", "1", "--channels", "4", "--kernels", "3", "--epochs", "1", "--train-images", "128",
        "--seeds", "2", "--chunk", "1"]


def test_build_resume_and_refusal(tmp_path, data_dir, capsys):
    work, out = tmp_path / "work", tmp_path / "table.npz"
    argv = [*TINY, "--data-dir", str(data_dir), "--workdir", str(work), "--out", str(out)]
    assert build.main(argv) == 0
    first = convnet.read_table(out)
    assert first.val_acc.shape == (1, 2, 1) and not first.failed.any()
    assert first.val_acc[0, 0, 0] != first.val_acc[0, 1, 0]  # the seeds train differently
    meta = first.meta
    assert meta["data"]["train_images"] == 128 and meta["protocol"]["epochs"] == 1
    assert meta["build"]["command"].startswith("python experiments/build_convnet_table.py --max-depth 1")
    assert meta["build"]["versions"]["jax"] and meta["build"]["wall_seconds"] > 0
    assert "conv3x3-4" in out.with_suffix(".md").read_text()

    # A crash mid-write of the second run's line: it is cut off and redone, with the same bits.
    records = work / build.RECORDS
    lines = records.read_text().splitlines(keepends=True)
    records.write_text(lines[0] + lines[1][:25])
    assert build.main(argv) == 0
    again = convnet.read_table(out)
    for name in ("val_acc", "test_acc", "params", "flops", "failed"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name), err_msg=name)
    assert len(records.read_text().splitlines()) == 2

    capsys.readouterr()
    assert build.main([*argv, "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "holds a run with other flags" in err and err.count("\n") == 1

    # --verify re-trains an entry with the stored protocol: it reproduces, and a tampered value is caught.
    assert build.main([*argv, "--verify", "1"]) == 0
    val_acc = again.val_acc.copy()
    val_acc[0, :, -1] += 0.001
    convnet.write_table(out, dataclasses.replace(again, val_acc=val_acc))
    assert build.main([*argv, "--verify", "1"]) == 1
