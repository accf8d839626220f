"""The main job, experiments/lanas_cifar.py, run as a user runs it, in a tiny configuration on the real
data: its output files, a finished run, resume after SIGKILL (same bits), and bad input."""

import errno
import json
import os
import pathlib
import pickle
import runpy
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from nasjax.experiment import UsageError, final_data, final_evaluation, search_data
from nasjax.experiment import workdir as workdir_module
from nasjax.io import CorruptFileError, read_jsonl

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "lanas_cifar.py"
# 2 rounds of 2 architectures of the 6-network smoke-test space, then 1 top + 1 random x 2 seeds.
# Search and final training use the same protocol and data sizes, so they share compiled programs.
TINY = ["--space", "tiny", "--budget", "4", "--n-init", "2", "--n-select", "2", "--height", "2",
        "--epochs", "1", "--final-epochs", "1", "--batch-size", "64", "--train-images", "128",
        "--val-images", "128", "--final-train-images", "128", "--test-images", "128",
        "--final-top-k", "1", "--final-random-k", "1", "--final-seeds", "2"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def lc():
    """The script's names (its `main`, run in process for the checks that need no training)."""
    return types.SimpleNamespace(**runpy.run_path(str(SCRIPT), run_name="lanas_cifar"))


@pytest.fixture(scope="module")
def env(tmp_path_factory, data_dir):
    """The subprocesses share one compile cache: only the first run compiles."""
    return {**os.environ, "NASJAX_DATA_DIR": str(data_dir),
            "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("xla_cache"))}


# One-shot LaNAS on LaNAS's NASNet cells: a 4-channel, 3-cell supernet trained 1 epoch, 2 rounds of 2 cells
# scored by it, then 1 top + 1 random cell trained from scratch.
CELLS_TINY = ["--space", "nasnet", "--evaluation", "supernet", "--channels", "4", "--layers", "3",
              "--supernet-epochs", "1", "--budget", "4", "--n-init", "2", "--n-select", "2", "--height", "2",
              "--epochs", "1", "--final-epochs", "1", "--batch-size", "32", "--train-images", "64",
              "--val-images", "64", "--final-train-images", "64", "--test-images", "64", "--final-top-k", "1",
              "--final-random-k", "1", "--final-seeds", "1"]


def launch(workdir, env, *extra, flags=TINY):
    return subprocess.Popen([sys.executable, str(SCRIPT), *flags, "--workdir", str(workdir), *extra],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory, env):
    """An uninterrupted run: (workdir, stdout, stderr)."""
    workdir = tmp_path_factory.mktemp("run") / "full"
    rc, out, err = finish(launch(workdir, env))
    assert rc == 0, err[-3000:]
    return workdir, out, err


def snapshot(folder) -> dict:
    """{path: bytes} of every file under `folder` but the compile cache (which a run may add to)."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and "xla_cache" not in p.parts}


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_wall_clock(records, lc):
    return [{k: v for k, v in r.items() if k not in lc.WALL_CLOCK_FIELDS} for r in records]


def test_outputs(finished, lc):
    workdir, out, err = finished
    space = lc.SPACES["tiny"]()
    config = json.loads((workdir / "config.json").read_text())
    assert config["space"] == "tiny" and config["budget"] == 4 and config["final_seeds"] == 2
    assert not (workdir / "lock").exists()

    evals = jsonl(workdir / "search" / "evaluations.jsonl")
    assert [e["index"] for e in evals] == [0, 1, 2, 3] and [e["round"] for e in evals] == [0, 0, 1, 1]
    assert len({tuple(e["encoding"]) for e in evals}) == 4  # LaNAS never re-asks an architecture
    for e in evals:
        assert e["description"] == space.describe(np.array(e["encoding"]))
        assert e["seed"] == 0 and len(e["train_key"]) == 2 and e["time"] > 0 and e["train_seconds"] > 0
        assert len(e["val_acc_per_epoch"]) == 1 and e["score"] == e["val_acc_per_epoch"][-1]
        assert 0 <= e["score"] <= 1 and e["params"] > 0 and e["flops"] > 0 and not e["failed"]
    run = json.loads((workdir / "search" / "run.json").read_text())
    assert run["evaluations"] == 4 and run["rounds"] == 2
    assert (workdir / "search" / "checkpoint.npz").stat().st_size > 0

    final = jsonl(workdir / "final.jsonl")
    assert [(r["group"], r["rank"], r["seed"]) for r in final] == [
        ("search", 0, 0), ("random", 0, 0), ("search", 0, 1), ("random", 0, 1)]
    best = max(evals, key=lambda e: e["score"])
    assert final[0]["encoding"] == best["encoding"]
    for r in final:
        assert r["description"] == space.describe(np.array(r["encoding"])) and not r["failed"]
        assert 0 <= r["test_acc"] <= 1 and r["time"] > 0
    # Seed s trains every architecture from the same key; seeds differ.
    assert final[0]["train_key"] == final[1]["train_key"] != final[2]["train_key"]

    for name in ("best_so_far.png", "accuracy_hist.png"):
        assert (workdir / name).read_bytes()[:8] == PNG
    summary = json.loads((workdir / "summary.json").read_text())
    search_acc = np.mean([100 * r["test_acc"] for r in final if r["group"] == "search"])
    random_acc = np.mean([100 * r["test_acc"] for r in final if r["group"] == "random"])
    assert summary["search"]["mean"] == pytest.approx(search_acc)
    assert summary["random"]["mean"] == pytest.approx(random_acc)
    assert summary["relative_improvement"] == pytest.approx(100 * (search_acc - random_acc) / random_acc,
                                                            rel=1e-4)
    assert summary["best_encoding"] == best["encoding"]
    md = (workdir / "summary.md").read_text()
    assert md in out  # the summary is what the run prints
    assert best["description"] in out and "RI = 100 (Acc_search - Acc_random) / Acc_random = " in out
    assert f"{summary['relative_improvement']:.2f}" in out
    # Progress bars with ETA (tqdm's "[elapsed<remaining") for the search and the final training.
    for bar in ("LaNAS:", "final training:"):
        assert any(bar in line and "<" in line for line in err.replace("\r", "\n").splitlines()), bar


def test_finished_run_says_so(finished, env):
    workdir, _, _ = finished
    before = snapshot(workdir)
    rc, out, err = finish(launch(workdir, env))
    assert rc == 0, err
    assert "finished" in out and (workdir / "summary.md").read_text() in out
    assert {p: p.read_bytes() for p in before} == before


def wait_for_lines(proc, path: pathlib.Path, n: int) -> None:
    """SIGKILL `proc` as soon as `path` holds n lines."""
    while not (path.exists() and len(path.read_text().splitlines()) >= n):
        assert proc.poll() is None, f"the run ended before {path.name} had {n} lines: {proc.stderr.read()}"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_results(finished, env, tmp_path, lc):
    full, _, _ = finished
    workdir = tmp_path / "interrupted"
    # Killed after the first search round, then in the final training after its first runs.
    wait_for_lines(launch(workdir, env), workdir / "search" / "evaluations.jsonl", 2)
    assert (workdir / "lock").exists() and not (workdir / "summary.json").exists()
    wait_for_lines(launch(workdir, env), workdir / "final.jsonl", 1)
    assert not (workdir / "summary.json").exists()
    rc, out, err = finish(launch(workdir, env))
    assert rc == 0, err[-3000:]
    for name in ("search/evaluations.jsonl", "final.jsonl"):
        assert without_wall_clock(jsonl(workdir / name), lc) == without_wall_clock(jsonl(full / name), lc)
    assert (workdir / "summary.md").read_text() == (full / "summary.md").read_text()


@pytest.mark.slow
def test_one_shot_nasnet_search_resumes_to_the_same_results(env, tmp_path, lc):
    """`--space nasnet --evaluation supernet`: the supernet is saved before the search; killed in the
    search and in the final training, the run resumes to an uninterrupted run's files."""
    full, interrupted = tmp_path / "full", tmp_path / "interrupted"
    rc, out, err = finish(launch(full, env, flags=CELLS_TINY))
    assert rc == 0, err[-3000:]
    assert "supernet epoch 1/1" in err and (full / "supernet.msgpack").stat().st_size > 0
    evals = jsonl(full / "search" / "evaluations.jsonl")
    assert len(evals) == 4 and all(e["evaluation"] == "supernet" and 0 <= e["score"] <= 1 for e in evals)
    summary = json.loads((full / "summary.json").read_text())
    assert summary["space"] == "nasnet" and summary["evaluation"] == "supernet"
    assert summary["supernet_tau_cells"] == 2 and -1 <= summary["supernet_kendall_tau"] <= 1
    assert summary["params_of_best"] > 0 and (full / "best_cell.png").read_bytes()[:8] == PNG
    assert "Kendall tau between the supernet's score" in out

    wait_for_lines(launch(interrupted, env, flags=CELLS_TINY), interrupted / "search" / "evaluations.jsonl", 2)
    assert (interrupted / "supernet.msgpack").read_bytes() == (full / "supernet.msgpack").read_bytes()
    wait_for_lines(launch(interrupted, env, flags=CELLS_TINY), interrupted / "final.jsonl", 1)
    rc, out, err = finish(launch(interrupted, env, flags=CELLS_TINY))
    assert rc == 0, err[-3000:]
    assert "supernet epoch" not in err  # read back, not trained again
    for name in ("search/evaluations.jsonl", "final.jsonl"):
        assert without_wall_clock(jsonl(interrupted / name), lc) == without_wall_clock(jsonl(full / name), lc)
    assert (interrupted / "summary.md").read_text() == (full / "summary.md").read_text()


@pytest.mark.parametrize("flags, said", [
    (["--channels", "8"], "--channels: only for the cell spaces"),
    (["--space", "nasnet", "--final-ema", "1"], "--final-ema: must be a finite number in"),
    (["--space", "nasnet", "--supernet-epochs", "2"], "--supernet-epochs needs --evaluation supernet"),
    (["--space", "darts", "--final-channels", "7"], "--final-channels 7 must be even"),
    (["--space", "nasnet", "--evaluation", "supernet", "--train-images", "128", "--batch-size", "128"],
     "fewer than 256"),
])
def test_cell_space_flags_are_checked(lc, flags, said):
    with pytest.raises(UsageError, match=said):
        lc.parse_args(flags)


def test_convnet_config_has_no_cell_flags_and_cells_get_defaults(lc):
    convnet = lc.resolved_config(lc.parse_args([]))
    assert not {"channels", "layers", "evaluation", "final_protocol"} & set(convnet)
    assert (convnet["final_top_k"], convnet["final_random_k"], convnet["final_seeds"]) == (2, 2, 2)
    args = lc.parse_args(["--space", "nasnet", "--evaluation", "supernet"])
    assert (args.channels, args.layers, args.supernet_epochs) == (8, 5, 2)
    assert (args.final_channels, args.final_layers) == (8, 5)
    assert (args.final_top_k, args.final_random_k, args.final_seeds) == (4, 4, 1)  # tau over 8 cells
    assert lc.parse_args(["--space", "darts", "--final-seeds", "3"]).final_seeds == 3
    args = lc.parse_args(["--space", "nasnet", "--final-channels", "36", "--final-layers", "20"])
    space = lc.make_space(args, final=True)
    assert (space.init_channels, space.layers) == (36, 20)
    config = lc.final_protocol(lc.TrainConfig(epochs=1, lr=0.05),
                               lc.parse_args(["--space", "darts", "--final-protocol", "+auxiliary"]))
    switches = (config.cutout, config.drop_path, config.auxiliary_weight, config.autoaugment)
    assert switches == (16, 0.2, 0.4, False) and config.ema_decay == 0.0
    assert (config.lr, config.epochs) == (0.05, 2)
    config = lc.final_protocol(lc.TrainConfig(epochs=1, lr=0.05), lc.parse_args(
        ["--space", "nasnet", "--final-protocol", "+autoaugment", "--final-ema", "0.9998"]))
    assert config.autoaugment and config.ema_decay == 0.9998


def test_final_data_has_no_validation_set(cifar):
    data = final_data(cifar, 0, 100)
    assert len(data.val_labels) == 0 and data.val_images.shape[1:] == (32, 32, 3)
    assert len(data.train_labels) == len(cifar.train_labels) + len(cifar.val_labels)
    assert len(data.test_labels) == 100
    searching = search_data(cifar, 256, 0)
    assert len(searching.train_labels) == 256 and len(searching.test_labels) == 0
    np.testing.assert_array_equal(searching.val_labels, cifar.val_labels)


def test_final_records_survive_a_torn_line_and_must_match_the_run(lc, tmp_path, cifar):
    path = tmp_path / "final.jsonl"
    record = {"group": "search", "rank": 0, "seed": 0, "encoding": [1, 0, -1, 0, -1]}
    path.write_text(json.dumps(record) + "\n" + json.dumps(record)[:20])  # killed mid-write
    assert read_jsonl(path) == [record] and path.read_text() == json.dumps(record) + "\n"
    # A line for the same (group, rank, seed) but another architecture is refused before training.
    other = {"search": np.array([[1, 1, -1, 0, -1]]), "random": np.array([[1, 0, -1, 0, -1]])}
    with pytest.raises(UsageError, match="holds another architecture for search #0 seed 0"):
        final_evaluation(lc.SPACES["tiny"](), cifar, None, other, 1, None, path, 1)
    path.write_text("{torn\n" + json.dumps(record) + "\n")
    with pytest.raises(CorruptFileError, match="line 1 is damaged"):
        read_jsonl(path)
    # The search log is cut back to its checkpoint's evaluations, and refused when shorter.
    path.write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n")
    assert read_jsonl(path, keep=1) == [record] and path.read_text() == json.dumps(record) + "\n"
    with pytest.raises(CorruptFileError, match="has 1 records but the checkpoint holds 2"):
        read_jsonl(path, keep=2)


def test_summary_json_is_strict_json(lc, tmp_path, monkeypatch):
    """Failed groups have no mean: summary.json says null, not NaN (which is not JSON)."""
    monkeypatch.setitem(lc.summarize.__globals__, "plot", lambda *args: None)  # test_outputs checks them
    space = lc.SPACES["tiny"]()
    encodings = np.asarray(space.enumerate()[:2])
    result = types.SimpleNamespace(scores=np.array([0.5, np.nan], np.float32), encodings=encodings,
                                   evaluations=2)
    final = [{"group": "search", "rank": 0, "seed": 0, "encoding": encodings[0].tolist(),
              "description": space.describe(encodings[0]), "test_acc": 0.4},
             {"group": "random", "rank": 0, "seed": 0, "encoding": encodings[1].tolist(),
              "description": space.describe(encodings[1]), "test_acc": None}]
    lc.summarize(space, result, final, tmp_path, 1.0, {})
    summary = json.loads((tmp_path / "summary.json").read_text(),
                         parse_constant=lambda name: pytest.fail(f"summary.json holds {name}"))
    assert summary["random"]["mean"] is None and summary["relative_improvement"] is None
    assert summary["search"]["mean"] == pytest.approx(40.0)


def one_line_error(capsys) -> str:
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err and not out, err
    return err


def _failing_lock_open(error):
    real = os.open

    def fake(path, *args, **kwargs):
        if pathlib.Path(path).name == "lock":
            raise error
        return real(path, *args, **kwargs)
    return fake


@pytest.mark.parametrize("problem, message", [
    ("workdir_is_a_file", "is a file, not a folder"),
    ("parent_is_a_file", "Not a directory"),
    ("read_only", "Read-only file system"),
    ("disk_full", "No space left on device"),
])
def test_unwritable_workdir_is_one_line(lc, tmp_path, capsys, monkeypatch, problem, message):
    """Each fails before any training: one line, exit status 2, nothing written or lost."""
    workdir = tmp_path / "w"
    if problem == "workdir_is_a_file":
        workdir.write_text("mine")
    elif problem == "parent_is_a_file":
        (tmp_path / "f").write_text("mine")
        workdir = tmp_path / "f" / "w"
    else:
        workdir.mkdir()
        # Simulated: the tests run as root, whom file modes do not stop.
        if problem == "read_only":
            monkeypatch.setattr(os, "open", _failing_lock_open(
                OSError(errno.EROFS, os.strerror(errno.EROFS), str(workdir / "lock"))))
        else:
            def full(path, data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            monkeypatch.setattr(workdir_module, "atomic_write_bytes", full)
    before = snapshot(tmp_path)
    assert lc.main([*TINY, "--workdir", str(workdir)]) == 2
    assert message in one_line_error(capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("damage, message", [
    ("truncated_checkpoint", "corrupt checkpoint"),
    ("short_log", "has 1 records but the checkpoint holds 4"),
])
def test_damaged_search_files_are_one_line(lc, finished, tmp_path, capsys, damage, message):
    workdir = tmp_path / "copy"
    shutil.copytree(finished[0], workdir, ignore=shutil.ignore_patterns("xla_cache"))
    (workdir / "summary.json").unlink()  # an unfinished run, resumed from its search files
    if damage == "truncated_checkpoint":
        path = workdir / "search" / "checkpoint.npz"
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    else:
        path = workdir / "search" / "evaluations.jsonl"
        path.write_text(path.read_text().splitlines(keepends=True)[0])
    before = snapshot(workdir)
    assert lc.main([*TINY, "--workdir", str(workdir)]) == 2
    assert message in one_line_error(capsys)
    assert snapshot(workdir) == before


@pytest.mark.parametrize("flags, message", [
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--budget", "7"], "exceeds the 6 networks"),
    (["--n-select", "5"], "--n-select must be in [1, --budget=4]"),
    (["--train-images", "100000"], "--train-images 100000 exceeds"),
    (["--data-dir", "/no/such/folder"], "does not exist"),
])
def test_bad_input_is_one_line_and_computes_nothing(lc, tmp_path, capsys, flags, message):
    workdir = tmp_path / "w"
    assert lc.main([*TINY, "--workdir", str(workdir), *flags]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and not out
    assert not (workdir / "config.json").exists()


def test_busy_or_other_workdir_is_refused_and_kept(lc, finished, tmp_path, capsys):
    workdir = tmp_path / "copy"
    shutil.copytree(finished[0], workdir, ignore=shutil.ignore_patterns("xla_cache"))
    before = snapshot(workdir)
    (workdir / "lock").write_text(str(os.getppid()))  # a live process (our parent) holds it
    assert lc.main([*TINY, "--workdir", str(workdir)]) == 2
    assert "is used by a running process" in capsys.readouterr().err
    (workdir / "lock").unlink()
    assert lc.main([*TINY, "--workdir", str(workdir), "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "holds a run with other flags {'seed': (0, 1)}" in err and err.count("\n") == 1
    assert {p: p.read_bytes() for p in before} == before


def test_command_line_exit_status(env, tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--budget", "0", "--workdir", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr == "error: argument --budget: must be >= 1, got 0 (see --help)\n"


# --- issue 27's reproducers: refused in one line before anything is written --------------------------
@pytest.mark.parametrize("flags, message", [
    (["--workdir", ""], "--workdir: must name a folder, got an empty path"),
    (["--lr", "-1"], "--lr: must be a finite number > 0, got -1"),
    (["--lr", "nan"], "--lr: must be a finite number > 0, got nan"),
    (["--lr", "inf"], "--lr: must be a finite number > 0, got inf"),
    (["--cutout", "-5"], "--cutout: must be in [0, 32], got -5"),
    (["--cutout", "100"], "--cutout: must be in [0, 32], got 100"),
    (["--seed", "-1"], "--seed: must be in [0, 4294967295], got -1"),
    (["--seed", "18446744073709551616"], "--seed: must be in [0, 4294967295]"),
    (["--ray-retries", "-1"], "--ray-retries: must be >= 0"),
])
def test_out_of_range_flags_are_refused_before_writing(lc, tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.chdir(tmp_path)  # `--workdir ""` would be the current folder
    assert lc.main([*TINY, "--workdir", str(tmp_path / "w"), *flags]) == 2
    assert message in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_data_dir_that_is_a_file_says_so(lc, tmp_path, capsys, data_dir, monkeypatch):
    batch = data_dir / "cifar-10-batches-py" / "test_batch"
    assert lc.main([*TINY, "--workdir", str(tmp_path / "w"), "--data-dir", str(batch)]) == 2
    assert f"{batch} is a file, not a folder" in one_line_error(capsys)
    monkeypatch.setenv("NASJAX_DATA_DIR", str(batch))
    assert lc.main([*TINY, "--workdir", str(tmp_path / "w")]) == 2
    assert f"$NASJAX_DATA_DIR {batch} is a file, not a folder" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def _cifar_copy(data_dir, target: pathlib.Path) -> pathlib.Path:
    folder = target / "cifar-10-batches-py"
    shutil.copytree(data_dir / "cifar-10-batches-py", folder)
    return target


def test_empty_batch_file_is_refused(lc, tmp_path, capsys, data_dir):
    data = _cifar_copy(data_dir, tmp_path / "data")
    (data / "cifar-10-batches-py" / "data_batch_5").write_bytes(
        pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}))
    assert lc.main([*TINY, "--workdir", str(tmp_path / "w"), "--data-dir", str(data)]) == 2
    assert "data_batch_5 holds no images" in one_line_error(capsys)
    assert not (tmp_path / "w").exists()


def test_damaged_or_missing_config_is_one_line(lc, finished, tmp_path, capsys):
    workdir = tmp_path / "copy"
    shutil.copytree(finished[0], workdir, ignore=shutil.ignore_patterns("xla_cache"))
    config = workdir / "config.json"
    text = config.read_text()
    config.write_text(text[:len(text) // 2])  # truncated
    before = snapshot(workdir)
    assert lc.main([*TINY, "--workdir", str(workdir)]) == 2
    assert f"{config} is damaged" in one_line_error(capsys)
    config.unlink()  # missing, and other flags: refused, no new config.json
    assert lc.main([*TINY, "--workdir", str(workdir), "--seed", "3"]) == 2
    assert f"{config} is missing but {workdir} holds a run's files" in one_line_error(capsys)
    assert not config.exists()
    config.write_text(text)
    assert snapshot(workdir) == {**before, config: text.encode()}


def test_resume_with_other_data_is_refused(lc, finished, tmp_path, capsys, data_dir):
    workdir = tmp_path / "copy"
    shutil.copytree(finished[0], workdir, ignore=shutil.ignore_patterns("xla_cache"))
    (workdir / "summary.json").unlink()  # unfinished: it would load its data and go on
    other = _cifar_copy(data_dir, tmp_path / "other")
    batch = other / "cifar-10-batches-py" / "data_batch_1"
    with open(batch, "rb") as f:
        content = pickle.load(f, encoding="bytes")
    content[b"data"][-1, 0] ^= 1  # one pixel of the last image
    batch.write_bytes(pickle.dumps(content))
    before = snapshot(workdir)
    assert lc.main([*TINY, "--workdir", str(workdir), "--data-dir", str(other)]) == 2
    assert "holds a run on other data" in one_line_error(capsys)
    assert snapshot(workdir) == before


@pytest.mark.parametrize("damage", ["md_deleted", "json_garbage"])
def test_incomplete_summary_is_written_again(finished, env, tmp_path, damage):
    """A finished run whose summary is incomplete says what is missing and writes it again from its
    logs (no training: every result is logged)."""
    full = finished[0]
    workdir = tmp_path / "copy"
    shutil.copytree(full, workdir, ignore=shutil.ignore_patterns("xla_cache"))
    if damage == "md_deleted":
        (workdir / "summary.md").unlink()
        said = f"{workdir / 'summary.md'} is missing"
    else:
        (workdir / "summary.json").write_text("garbage")
        said = f"{workdir / 'summary.json'} is damaged"
    rc, out, err = finish(launch(workdir, env))
    assert rc == 0 and said in err, err[-2000:]
    assert (workdir / "summary.md").read_text() == (full / "summary.md").read_text()
    summary = json.loads((workdir / "summary.json").read_text())
    expected = json.loads((full / "summary.json").read_text())
    assert {**summary, "wall_seconds_last_invocation": 0} == {**expected, "wall_seconds_last_invocation": 0}


def test_temporaries_of_a_killed_run_are_removed(lc, finished, tmp_path, capsys):
    workdir = tmp_path / "copy"
    shutil.copytree(finished[0], workdir, ignore=shutil.ignore_patterns("xla_cache"))
    left = [workdir / "search" / ".checkpoint.npz.0123abcd.tmp", workdir / ".summary.json.89abcdef.tmp"]
    for path in left:
        path.write_bytes(b"partial")
    assert lc.main([*TINY, "--workdir", str(workdir)]) == 0
    assert not any(path.exists() for path in left)
    capsys.readouterr()


@pytest.mark.slow
def test_refused_command_then_corrected_runs(env, tmp_path):
    """`--lr nan` is refused before anything is written; the corrected command then runs."""
    workdir = tmp_path / "w"
    rc, out, err = finish(launch(workdir, env, "--lr", "nan"))
    assert rc == 2 and err.count("\n") == 1 and "--lr" in err and not workdir.exists()
    rc, out, err = finish(launch(workdir, env, "--lr", "0.05"))
    assert rc == 0, err[-2000:]
    assert json.loads((workdir / "config.json").read_text())["lr"] == 0.05
