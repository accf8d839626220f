"""nasjax.io: atomic_write's target holds the old or the new content, never a mix, and no temporary
file is left behind (one left by a killed process is removed by `remove_temporaries`); a write that
fails names its file."""

import os
import stat

import pytest

from nasjax.io import append_jsonl, atomic_write, atomic_write_bytes, remove_temporaries


def test_replaces_content_with_the_usual_file_mode(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    assert atomic_write_bytes(path, b"new") == path and path.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as open(path, "wb") makes it
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file(tmp_path, error):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def write(f):
        f.write(b"half of the new")
        raise error

    with pytest.raises(type(error)) as raised:
        atomic_write(path, write)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    if isinstance(error, OSError):  # a full disk: the error names the file, for the one-line report
        assert raised.value.filename == str(path) and raised.value.errno == 28


def test_a_failed_append_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as raised:
        append_jsonl(path, [{"a": 1}])
    assert raised.value.filename == str(path) and raised.value.strerror == "No space left on device"


def test_leftover_temporaries_are_removed(tmp_path):
    atomic_write_bytes(tmp_path / "f.bin", b"x")
    (tmp_path / ".f.bin.deadbeef.tmp").write_bytes(b"killed mid-write")
    (tmp_path / ".f.bin.tmp").write_bytes(b"not ours")
    assert [p.name for p in remove_temporaries(tmp_path)] == [".f.bin.deadbeef.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".f.bin.tmp", "f.bin"]


def test_callers_write_through_it(tmp_path, monkeypatch):
    """The three persistence paths (search checkpoint, population state, ConvNet table) go through
    atomic_write: a failure inside it leaves their previous files intact."""
    import numpy as np
    from test_convnet_benchmark import SPACE, random_table

    import nasjax.io
    from nasjax.benchmarks import convnet
    from nasjax.search import loop
    from nasjax.train import population

    calls = []
    real = nasjax.io.atomic_write

    def spy(path, write):
        calls.append(os.path.basename(path))
        return real(path, write)

    for module in (loop, population, convnet):
        monkeypatch.setattr(module, "atomic_write", spy)
    loop._save(tmp_path, {"x": np.zeros(2)}, {"config": {}})
    population.save_population(tmp_path / "pop.pkl", {"any": "picklable state"})
    convnet.write_table(tmp_path / "t.npz", random_table(SPACE))
    assert calls == ["checkpoint.npz", "run.json", "pop.pkl", "t.npz"]
