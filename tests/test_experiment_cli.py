"""Every script in experiments/ refuses an unknown flag and an out-of-range value with one line and exit
status 2, before it computes or writes anything; and the library's flag types and work-directory
rules behind them (`nasjax.experiment`)."""

import argparse
import json
import os
import pathlib
import runpy

import numpy as np
import pytest

from nasjax.experiment import UsageError, begin, check_config, data_fingerprint, finished, own_workdir
from nasjax.experiment.cli import SEED, folder, integer, real
from nasjax.io import append_jsonl, atomic_write_bytes, read_jsonl, remove_temporaries
from nasjax.runtime import CPU_SCHEDULER_FLAG

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
# script -> an out-of-range value and what the line says about it
OUT_OF_RANGE = {
    "accelerator_check": (["--archs", "0"], "--archs: must be >= 1, got 0"),
    "build_convnet_table": (["--epochs", "0"], "--epochs: must be >= 1, got 0"),
    "lanas_cifar": (["--lr", "-1"], "--lr: must be a finite number > 0, got -1"),
    "lanas_transfer": (["--fractions", "0"], "--fractions: must be in [1, 90], got 0"),
    "perf_conv": (["--batch", "0"], "--batch: must be >= 1, got 0"),
    "perf_population": (["--archs", "0"], "--archs: must be >= 1, got 0"),
    "perf_rnn": (["--hidden", "0"], "--hidden: must be >= 1, got 0"),
    "perf_search": (["--chunk", "7"], "--chunk 7 must divide --searches 100"),
    "protocol_ablation": (["--longer", "nan"], "--longer: must be a finite number in [1, 1000], got nan"),
    "ranking_stability": (["--archs", "1"], "--archs: must be >= 2, got 1"),
    "ri_benchmark": (["--seeds", "0"], "--seeds: must be >= 1, got 0"),
    "rnn_ptb": (["--dropout", "1"], "--dropout: must be a finite number in [0, 1), got 1"),
    "rs_ws": (["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
    "sample_efficiency": (["--budget", "0"], "--budget: must be >= 1, got 0"),
}


def test_every_script_is_covered():
    assert sorted(OUT_OF_RANGE) == sorted(p.stem for p in EXPERIMENTS.glob("*.py"))


@pytest.mark.parametrize("script", sorted(OUT_OF_RANGE))
def test_bad_flags_are_one_line_and_exit_2(script, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a script would write by default lands here
    main = runpy.run_path(str(EXPERIMENTS / f"{script}.py"), run_name=script)["main"]
    flags, message = OUT_OF_RANGE[script]
    for argv, said in ((["--no-such-flag"], "unrecognized arguments: --no-such-flag"), (flags, message)):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert err.startswith("error: ") and said in err and err.count("\n") == 1, err
        assert "Traceback" not in err and not out
    assert list(tmp_path.iterdir()) == []


VMAPPED_SEARCHES = sorted(p.stem for p in EXPERIMENTS.glob("*.py")
                          if "nasjax.experiment.tabular_search import" in p.read_text())


def test_vmapped_searches_are_found():
    assert {"sample_efficiency", "ri_benchmark", "lanas_transfer"} <= set(VMAPPED_SEARCHES)


@pytest.mark.parametrize("script", VMAPPED_SEARCHES)
def test_scripts_with_vmapped_searches_turn_the_cpu_scheduler_off(script, monkeypatch):
    """Their vmapped NAO over 48+ seeds hangs on CPU under XLA's concurrency-optimized scheduler
    (test_nao), so loading the script must set the flag, before its first computation."""
    monkeypatch.setenv("XLA_FLAGS", "")
    runpy.run_path(str(EXPERIMENTS / f"{script}.py"), run_name=script)
    assert CPU_SCHEDULER_FLAG in os.environ["XLA_FLAGS"]


def test_sample_efficiency_refuses_batch_0(capsys):
    main = runpy.run_path(str(EXPERIMENTS / "sample_efficiency.py"), run_name="sample_efficiency")["main"]
    assert main(["--batch", "0"]) == 2
    assert "--batch: must be >= 1, got 0" in capsys.readouterr().err


# --- the flag types ------------------------------------------------------------------------------------
@pytest.mark.parametrize("parse, text, said", [
    (integer(1), "0", "must be >= 1, got 0"),
    (integer(0, 5), "6", "must be in [0, 5], got 6"),
    (integer(), "2.5", "expected an integer"),
    (real(0, lo_open=True), "0", "must be a finite number > 0"),
    (real(0, 1, hi_open=True), "1", "in [0, 1)"),
    (real(), "inf", "finite"),
    (real(), "-nan", "finite"),
    (SEED, "-1", "must be in [0, 4294967295]"),
    (SEED, str(2**64), "must be in [0, 4294967295]"),
    (folder, "", "empty path"),
    (folder, "  ", "empty path"),
])
def test_flag_types_refuse(parse, text, said):
    with pytest.raises(argparse.ArgumentTypeError, match=said.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        parse(text)


def test_flag_types_accept():
    assert integer(1)("3") == 3 and real(0, lo_open=True)("0.05") == 0.05 and SEED(str(2**32 - 1)) == 2**32 - 1


# --- the work directory ----------------------------------------------------------------------------
def test_a_refused_start_leaves_nothing(tmp_path):
    target = tmp_path / "a" / "b"
    with pytest.raises(UsageError):
        with own_workdir(target):
            assert (target / "lock").exists()
            raise UsageError("the flags do not fit the data")
    assert list(tmp_path.iterdir()) == []


def test_config_and_data_are_checked_on_resume(tmp_path):
    data = data_fingerprint("tfds", np.arange(4))
    with own_workdir(tmp_path / "w") as w:
        assert check_config(w, {"lr": 0.1})
        begin(w, {"lr": 0.1}, data, True)
        (w / "log.jsonl").write_text("")
    with own_workdir(tmp_path / "w") as w:
        assert not check_config(w, {"lr": 0.1})
        with pytest.raises(UsageError, match=r"holds a run with other flags \{'lr': \(0.1, 0.2\)\}"):
            check_config(w, {"lr": 0.2})
        with pytest.raises(UsageError, match="holds a run on other data .its sha256 differ"):
            begin(w, {"lr": 0.1}, data_fingerprint("tfds", np.arange(5)), False)
        begin(w, {"lr": 0.1}, data, False)
        (w / "config.json").write_text('{"lr": 0.')
        with pytest.raises(UsageError, match="config.json is damaged"):
            check_config(w, {"lr": 0.1})
        (w / "config.json").unlink()
        with pytest.raises(UsageError, match="config.json is missing but .* holds a run's files .data.json"):
            check_config(w, {"lr": 0.2})
        assert not (w / "config.json").exists()


def test_data_fingerprint_names_the_files_read(tmp_path):
    (tmp_path / "batch").write_bytes(b"12345")
    assert data_fingerprint(f"local:{tmp_path}", np.zeros(3, np.uint8))["files"] == {"batch": 5}


def test_finished_says_what_is_missing(tmp_path):
    assert finished(tmp_path, "summary.json") == (False, None)
    (tmp_path / "summary.json").write_text("garbage")
    assert finished(tmp_path, "summary.json")[1] == f"{tmp_path / 'summary.json'} is damaged"
    (tmp_path / "summary.json").write_text(json.dumps({"a": 1}))
    done, problem = finished(tmp_path, "summary.json", files=("summary.md",), keys=("a", "b"))
    assert not done and "lacks 'b'" in problem and "summary.md is missing" in problem
    (tmp_path / "summary.md").write_text("")
    assert finished(tmp_path, "summary.json", files=("summary.md",), keys=("a",)) == (True, None)


def test_temporaries_are_removed_and_nothing_else(tmp_path):
    atomic_write_bytes(tmp_path / "kept.json", b"{}")
    left = tmp_path / "sub" / ".checkpoint.npz.0123abcd.tmp"
    left.parent.mkdir()
    left.write_bytes(b"partial")
    mine = tmp_path / ".notes.tmp"
    mine.write_text("a user's file")
    assert remove_temporaries(tmp_path) == [left]
    assert not left.exists() and mine.exists() and (tmp_path / "kept.json").exists()


def test_append_jsonl_writes_whole_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"a": 1}, {"b": [1, 2]}])
    append_jsonl(path, [{"c": None}])
    assert path.read_text() == '{"a": 1}\n{"b": [1, 2]}\n{"c": null}\n'
    assert read_jsonl(path) == [{"a": 1}, {"b": [1, 2]}, {"c": None}]


@pytest.mark.parametrize("flags, said", [
    (["--train-tokens", "1"], "--train-tokens 1: 1 tokens do not fill one window"),
    (["--valid-tokens", "20"], "--valid-tokens 20: 20 tokens do not fill one window"),
    (["--final-train-tokens", "100"], "--final-train-tokens 100: 100 tokens do not fill one window"),
])
def test_rnn_ptb_refuses_too_few_tokens_before_its_work_directory(flags, said, tmp_path, capsys, data_dir):
    main = runpy.run_path(str(EXPERIMENTS / "rnn_ptb.py"), run_name="rnn_ptb")["main"]
    assert main([*flags, "--workdir", str(tmp_path / "w"), "--data-dir", str(data_dir)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and said in err and err.count("\n") == 1 and not out, err
    assert list(tmp_path.iterdir()) == []
