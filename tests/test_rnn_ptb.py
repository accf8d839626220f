"""experiments/rnn_ptb.py end to end at a tiny size on the real Penn Treebank: RS-ES, RS-WS and LaNAS
each find a cell, the final training scores it, the files are written, and the same seed in another
work directory gives the same numbers (wall-clock fields aside)."""

import csv
import json
import pathlib
import runpy

import pytest

pytestmark = pytest.mark.slow
SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "rnn_ptb.py"
TINY = ["--nodes", "2", "--hidden", "8", "--batch", "4", "--bptt", "5", "--train-tokens", "2000",
        "--valid-tokens", "1000", "--test-tokens", "1000", "--chunk-windows", "5", "--budget-chunks", "6",
        "--population", "2", "--ws-candidates", "2", "--es-max", "3", "--lanas-chunks", "1",
        "--final-epochs", "1", "--final-train-tokens", "2000"]


def without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def test_tiny_run_finds_and_scores_a_cell_per_method_and_repeats_itself(data_dir, tmp_path):
    main = runpy.run_path(str(SCRIPT), run_name="rnn_ptb")["main"]
    for name in ("a", "b"):
        assert main(["--data-dir", str(data_dir), "--workdir", str(tmp_path / name), *TINY]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    summary = list(csv.DictReader(open(a / "summary.csv")))
    assert [r["method"] for r in summary] == ["RS-ES", "RS-WS", "LaNAS"]
    assert all(r["cell"].startswith("Genotype(recurrent=") and float(r["final_test_ppl"]) > 1 for r in summary)
    assert (a / "rnn_ptb.png").stat().st_size > 0 and "RS-WS" in (a / "summary.md").read_text()
    assert without_seconds(summary) == without_seconds(list(csv.DictReader(open(b / "summary.csv"))))
    final = [[json.loads(line) for line in open(d / "final.jsonl")] for d in (a, b)]
    assert without_seconds(final[0]) == without_seconds(final[1]) and len(final[0]) == 3
