"""nasjax.benchmarks.supernet: a trained supernet as a benchmark. Its mechanisms with a stand-in scorer
(each cell scored once, the cache file read back and refused when it is another supernet's, the
checkpoint's data checked), the host-loop searches equal to `scan`'s, and (slow) a real supernet read
back from its checkpoint scoring as the one-shot run does, searched by sample_efficiency.py."""

import json
import pathlib
import runpy
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax import search
from nasjax.benchmarks import BenchmarkDataError, supernet
from nasjax.data import Dataset
from nasjax.experiment import tabular_search
from nasjax.io import CorruptFileError
from nasjax.spaces import NASNetSpace
from nasjax.train import TrainConfig

SPACE = NASNetSpace(num_nodes=2, init_channels=4, layers=3)
CONFIG = TrainConfig(epochs=1, batch_size=4)
STATE = {"w": np.float32([1, 2])}  # flax.serialization writes any pytree: a stand-in for a TrainState


def stand_in_score(enc):
    """A deterministic score of a cell, traceable: what the stand-in scorer returns."""
    enc = jnp.asarray(enc, jnp.float32)
    return jnp.sin(jnp.sum(enc * jnp.arange(1, enc.size + 1).reshape(enc.shape))) + 1.0


@pytest.fixture
def scorer(monkeypatch):
    """candidate_scorer replaced: calls counts the cells scored; scores are `stand_in_score`."""
    calls = []

    def make(space, data, config, bn_batches):
        def score(state, candidates):
            calls.append(np.asarray(candidates).copy())
            return np.asarray([stand_in_score(c) for c in candidates], np.float64)
        return score

    monkeypatch.setattr(supernet, "candidate_scorer", make)
    return calls


def bench(cache_file=None, state=STATE):
    return supernet.SupernetBenchmark(SPACE, state, None, CONFIG, cache_file=cache_file)


def cells(n, seed=0):
    return np.asarray(SPACE.sample(jax.random.key(seed), n))


def test_each_cell_is_scored_once(scorer):
    b, c = bench(), cells(3)
    first = b.scores(np.stack([c[0], c[1], c[0]]))
    assert b.scored == 2 and len(scorer) == 2
    np.testing.assert_array_equal(first, np.float32([stand_in_score(c[0]), stand_in_score(c[1]),
                                                     stand_in_score(c[0])]))
    np.testing.assert_array_equal(b.objective()(c, jax.random.key(9)), b.scores(c))  # the key is not read
    assert b.scored == 3 and not b.jittable and not b.enumerable and b.curves is None


def test_the_cache_file_answers_a_later_benchmark_with_the_same_bits(scorer, tmp_path):
    path, c = tmp_path / "scores.jsonl", cells(4)
    scores = bench(path).scores(c)
    again = bench(path)
    np.testing.assert_array_equal(again.scores(c), scores)
    assert again.scored == 0 and len(scorer) == 4
    with pytest.raises(BenchmarkDataError, match="caches another supernet's scores"):
        bench(path, state={"w": np.float32([1, 3])})
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ['{"encoding": [1, 2], "score": 0.5}'] + lines[2:]) + "\n")
    with pytest.raises(CorruptFileError, match="line 3 is not a cached score of a \\(2, 2, 2\\) cell"):
        bench(path)


def test_host_searches_equal_the_vmapped_scan(scorer):
    """On the stand-in scores, which `scan` can also trace, the host loops (one per key) evaluate
    exactly what the vmapped scans do."""
    keys = jax.random.split(jax.random.key(0), 2)
    strategy = search.make("evolution", SPACE, capacity=6, population_size=3, sample_size=2)
    host = tabular_search.run_on_host(strategy, bench(), 6, 2, keys)
    state = jax.vmap(lambda k: search.scan(strategy, lambda a, _: jax.vmap(stand_in_score)(a), k, 3, 2))(keys)
    np.testing.assert_array_equal(host.scores, np.asarray(state.history.scores))
    assert host.compile_seconds is None and host.scores.shape == (2, 6)
    np.testing.assert_array_equal(tabular_search.run_on_host(strategy, bench(), 6, 2, keys).scores,
                                  host.scores)  # same keys, same bits


def test_ri_benchmark_baseline_on_a_supernet_is_the_random_searches(scorer):
    """No table: best-of-b of the "random" strategy's searches, and P(beat) against those searches."""
    ri = runpy.run_path(str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "ri_benchmark.py"),
                        run_name="ri_benchmark")
    keys = jax.random.split(jax.random.key(1), 3)
    random, p_beat, average = ri["random_baseline"](bench(), [1, 4], keys)
    sampled = tabular_search.run_strategy("random", bench(), 4, 1, keys).scores.astype(np.float64)
    best4 = sampled.max(axis=1)
    np.testing.assert_allclose(random[4], (best4.mean(), best4.std()))
    np.testing.assert_allclose(random[1][0], sampled[:, 0].mean())
    assert average == pytest.approx(sampled.mean())
    np.testing.assert_array_equal(p_beat(4, np.array([best4.max() + 1, best4.min() - 1, best4.min()])),
                                  [1.0, 0.0, 0.5 * np.sum(best4 == best4.min()) / 3])  # ties count half


@pytest.fixture
def checkpoint(tmp_path, cifar):
    """A checkpoint of the stand-in state, saved for the real CIFAR-10 split 0, 8 validation images."""
    supernet.save(tmp_path, SPACE, CONFIG, STATE, cifar, split_seed=0, val_images=8)
    return tmp_path


def test_the_checkpoint_names_what_it_scores_with(checkpoint, cifar):
    meta = json.loads((checkpoint / supernet.METADATA_FILE).read_text())
    assert meta["space"] == {"class": "NASNetSpace", "num_nodes": 2, "ops": list(SPACE.ops), "init_channels": 4,
                             "layers": 3}
    assert meta["train_config"]["batch_size"] == 4 and meta["data"]["val_images"] == 8
    assert meta["data"]["sha256"] == supernet.fingerprint(supernet.scoring_data(cifar, 8, 2, 4))
    with pytest.raises(ValueError, match="has no weight-sharing supernet"):
        from nasjax.spaces import NASBench201Space
        supernet.save(checkpoint, NASBench201Space(), CONFIG, STATE, cifar, split_seed=0)


@pytest.mark.parametrize("damage, said", [
    (lambda d: (d / supernet.WEIGHTS_FILE).unlink(), "supernet.msgpack is missing"),
    (lambda d: (d / supernet.METADATA_FILE).write_text("{"), "supernet.json is damaged"),
    (lambda d: edit(d, lambda m: m["space"].update({"class": "Nope"})), "supernet.json is damaged"),
    (lambda d: edit(d, lambda m: m["data"].update({"val_images": 9})), "is not the data the supernet"),
    (lambda d: edit(d, lambda m: m["data"].update({"split_seed": 1})), "is not the data the supernet"),
])
def test_a_damaged_checkpoint_or_other_data_is_refused(checkpoint, data_dir, damage, said):
    damage(checkpoint)
    with pytest.raises(BenchmarkDataError, match=said):
        supernet.load(checkpoint, data_dir)


def edit(folder: pathlib.Path, change):
    meta = json.loads((folder / supernet.METADATA_FILE).read_text())
    change(meta)
    (folder / supernet.METADATA_FILE).write_text(json.dumps(meta))


def test_scoring_data_names_a_short_part():
    empty = np.zeros((0, 32, 32, 3), np.uint8)
    data = Dataset(np.zeros((3, 32, 32, 3), np.uint8), np.zeros(3, np.int32), empty, np.zeros(0, np.int32),
                   empty, np.zeros(0, np.int32), "cifar10", "test")
    with pytest.raises(ValueError, match="asked for 4 train images"):
        supernet.scoring_data(data, 0, 2, 2)


@pytest.mark.slow
def test_a_real_supernet_read_back_scores_as_the_one_shot_run(tmp_path, data_dir, capsys):
    """Trained and saved as lanas_cifar's one-shot run does, loaded from the checkpoint it scores the
    same bits; sample_efficiency.py searches it with every strategy asked and caches its scores."""
    from nasjax.experiment import one_shot, search_data
    from nasjax.data import load_cifar10
    sample_efficiency = types.SimpleNamespace(**runpy.run_path(
        str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "sample_efficiency.py"),
        run_name="sample_efficiency"))

    data = search_data(load_cifar10(data_dir, split_seed=0), 64, 32)
    config = TrainConfig(epochs=1, batch_size=32, eval_batch_size=32)
    state = one_shot.trained_supernet(SPACE, data, config, jax.random.key(0), tmp_path, split_seed=0, val_images=32)
    c = cells(3)
    seen = one_shot.supernet_objective(SPACE, state, data, config, seed=0).scores(c)
    loaded = supernet.load(tmp_path, data_dir)
    np.testing.assert_array_equal(loaded.scores(c), seen)
    assert np.all((seen >= 0) & (seen <= 1))

    out = tmp_path / "se"
    argv = ["--supernet", str(tmp_path), "--data-dir", str(data_dir), "--seeds", "2", "--budget", "4",
            "--strategies", "random", "evolution", "--out", str(out)]
    assert sample_efficiency.main(argv) == 0
    printed = capsys.readouterr().out
    assert "the best score any search found" in printed and "random" in printed
    rows = (out / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and not (out / "landscape.json").exists()
    cached = (out / supernet.CACHE_FILE).read_text().splitlines()
    assert sample_efficiency.main(argv) == 0  # again: every cell from the cache
    assert "scored by the supernet in this invocation: 0" in capsys.readouterr().out
    assert (out / supernet.CACHE_FILE).read_text().splitlines() == cached
