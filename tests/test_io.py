"""nasjax.io.atomic_write: the target holds the old or the new content, never a mix, and no temporary
file is left behind."""

import os
import stat

import pytest

from nasjax.io import atomic_write, atomic_write_bytes


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

    with pytest.raises(type(error)):
        atomic_write(path, write)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


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
