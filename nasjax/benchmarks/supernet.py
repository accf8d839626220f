"""A trained weight-sharing supernet as a benchmark (`002_*` §4.3, Fig. 6: one-shot LaNAS's supernet
doubles as a benchmark on which search algorithms are compared over ~10^17 cells).

A checkpoint is a folder holding
  supernet.msgpack  the supernet's TrainState (flax.serialization)
  supernet.json     what scoring needs besides the weights: the space (class and fields), the
                    TrainConfig the supernet was built and trained with, the CIFAR-10 split (seed,
                    validation fraction), the validation images used and the batch-norm batches, and
                    the sha256 of the images and labels a score reads (other data is refused)
`experiments/lanas_cifar.py --evaluation supernet` writes one in its work directory (`save`).

    bench = nasjax.benchmarks.supernet.load("runs/lanas_cifar", data_dir, cache_file=out / "scores.jsonl")
    scores = bench.objective()(archs, key)      # numpy float32 (n,), on the host; the key is not used

A cell's score is its validation accuracy with the supernet's weights, batch-norm statistics recomputed
on its own path (`nasjax.train.weight_sharing.candidate_scorer`), one cell per call of one compiled
program: deterministic, so a cached score, a re-scored one and one read back from `cache_file` are
the same bits. Every cell is scored once per benchmark: the cache holds its score, and with
`cache_file` (one JSON line per cell, appended as they are scored) once across processes too.

What the layers above read instead of the type: `jittable = False` (the objective runs on the host,
so searches on it are `nasjax.search.run` loops, one per seed, not `scan`), `enumerable = False` (no
table, no known optimum), `curves = None` (no per-epoch scores for multi-fidelity strategies).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib

import flax.serialization
import jax
import numpy as np

from nasjax.benchmarks.tabular import BenchmarkDataError
from nasjax.data import Dataset, load_cifar10
from nasjax.io import CorruptFileError, append_jsonl, atomic_write_bytes, read_jsonl, sha256_of_arrays
from nasjax.spaces import DARTSSpace, NASNetSpace
from nasjax.spaces.base import Space
from nasjax.train import TrainConfig
from nasjax.train.state import TrainState
from nasjax.train.weight_sharing import candidate_scorer, init_supernet

WEIGHTS_FILE = "supernet.msgpack"
METADATA_FILE = "supernet.json"
CACHE_FILE = "supernet_scores.jsonl"  # the score cache the experiments keep in their output folder
# The spaces that have a weight-sharing supernet, by the class name supernet.json records.
SPACES = {cls.__name__: cls for cls in (NASNetSpace, DARTSSpace)}


def scoring_data(data: Dataset, val_images: int, bn_batches: int, batch_size: int) -> Dataset:
    """What a score reads: the first `bn_batches` x `batch_size` training images (batch norm) and the
    first `val_images` validation images (0: all); ValueError if the data holds fewer."""
    data = data.take(train=bn_batches * batch_size, val=val_images)
    return data._replace(test_images=data.test_images[:0], test_labels=data.test_labels[:0])


def fingerprint(data: Dataset) -> str:
    """sha256 of the arrays a score reads (`scoring_data`'s)."""
    return sha256_of_arrays(data.train_images, data.val_images, data.val_labels)


def save(folder: str | os.PathLike, space: Space, config: TrainConfig, state: TrainState, data: Dataset, *,
         split_seed: int, validation_fraction: float = 0.5, val_images: int = 0, bn_batches: int = 2) -> None:
    """Write the checkpoint of the supernet `state` (trained with `config` on the CIFAR-10 split
    `load_cifar10(..., validation_fraction, split_seed)`, here `data`) to `folder`, scoring on its first
    `val_images` validation images: supernet.msgpack, then supernet.json (both atomically)."""
    if type(space).__name__ not in SPACES:
        raise ValueError(f"{type(space).__name__} has no weight-sharing supernet; known: {sorted(SPACES)}")
    folder = pathlib.Path(folder)
    atomic_write_bytes(folder / WEIGHTS_FILE, flax.serialization.to_bytes(state))
    metadata = {"space": {"class": type(space).__name__, **dataclasses.asdict(space)},
                "train_config": dataclasses.asdict(config),
                "data": {"split_seed": split_seed, "validation_fraction": validation_fraction,
                         "val_images": val_images, "bn_batches": bn_batches, "train_images": len(data.train_labels),
                         "sha256": fingerprint(scoring_data(data, val_images, bn_batches, config.batch_size))}}
    atomic_write_bytes(folder / METADATA_FILE, (json.dumps(metadata, indent=2) + "\n").encode())


def read_state(path: pathlib.Path, space: Space, config: TrainConfig, train_images: int) -> TrainState:
    """The TrainState saved at `path` for a supernet trained with `config` on `train_images` images."""
    template = init_supernet(space, config, jax.random.key_data(jax.random.key(0)),
                             train_images // config.batch_size)  # only its structure is used
    try:
        return flax.serialization.from_bytes(template, path.read_bytes())
    except (ValueError, KeyError, TypeError) as e:
        raise BenchmarkDataError(f"{path} is not a supernet of this space and config ({e})") from None


class SupernetBenchmark:
    """Cells of `space` scored by the trained supernet `state` on `data` (`scoring_data`'s arrays).

    name str; space the cell space; scored int: cells scored so far (not answered from the cache).
    """

    jittable = False
    enumerable = False
    curves = None

    def __init__(self, space: Space, state: TrainState, data: Dataset, config: TrainConfig,
                 bn_batches: int = 2, name: str = "supernet", cache_file: str | os.PathLike | None = None):
        self.name, self.space, self.state = name, space, state
        self._score = candidate_scorer(space, data, config, bn_batches)
        self._cache: dict[bytes, float] = {}
        self._cache_file = None if cache_file is None else pathlib.Path(cache_file)
        self.scored = 0
        if self._cache_file is not None:
            self._read_cache()

    def __repr__(self) -> str:
        return f"SupernetBenchmark({self.name!r}, {type(self.space).__name__}, {len(self._cache)} cells scored)"

    def _identity(self) -> str:
        return hashlib.sha256(flax.serialization.to_bytes(self.state)).hexdigest()

    def _read_cache(self) -> None:
        records, identity = read_jsonl(self._cache_file), self._identity()
        if not records:
            append_jsonl(self._cache_file, [{"supernet": identity}])
            return
        if records[0].get("supernet") != identity:
            raise BenchmarkDataError(f"{self._cache_file} caches another supernet's scores; give another "
                                     "cache file")
        shape = self.space.encoding_shape
        for i, r in enumerate(records[1:], start=2):
            try:
                enc = np.asarray(r["encoding"], np.int32)
                if enc.shape != shape:
                    raise ValueError
                self._cache[enc.tobytes()] = float(r["score"])
            except (KeyError, TypeError, ValueError):
                raise CorruptFileError(f"{self._cache_file} line {i} is not a cached score of a "
                                       f"{shape} cell; move the file away to score again") from None

    def scores(self, archs) -> np.ndarray:
        """float32 (n,): each cell's score, scored once (later asks read the cache)."""
        archs = np.asarray(archs, np.int32)
        new = {}  # bytes -> (cell, score)
        for arch in archs:
            k = arch.tobytes()
            if k not in self._cache and k not in new:
                new[k] = arch, float(self._score(self.state, arch[None])[0])  # one program for every cell
                self.scored += 1
        if new and self._cache_file is not None:
            append_jsonl(self._cache_file, [{"encoding": a.tolist(), "score": v} for a, v in new.values()])
        self._cache.update((k, v) for k, (_, v) in new.items())
        return np.array([self._cache[a.tobytes()] for a in archs], np.float32)

    def objective(self, noisy: bool = True):
        """f(archs int (n, *encoding_shape), key) -> float32 (n,) for `nasjax.search.run`: the scores
        are deterministic, so `noisy` and the key change nothing."""
        del noisy
        return lambda archs, key: self.scores(archs)

    def optimum(self):
        raise ValueError(f"{self.name}: a supernet benchmark has no known optimum (enumerable = False)")

    def enumerate(self):
        raise ValueError(f"{self.name}: the space is too large to enumerate (enumerable = False)")


def load(folder: str | os.PathLike, data_dir: str | os.PathLike | None = None,
         cache_file: str | os.PathLike | None = None, name: str | None = None) -> SupernetBenchmark:
    """The benchmark of the checkpoint in `folder` (see the module docstring; named `name`, default
    "supernet:<folder>"), reading CIFAR-10 from `data_dir` (or $NASJAX_DATA_DIR, else tfds) and
    checking it is the data the supernet scores on.
    BenchmarkDataError naming the file for a missing or damaged checkpoint or other data."""
    folder = pathlib.Path(folder)
    meta_path, weights = folder / METADATA_FILE, folder / WEIGHTS_FILE
    for path in (meta_path, weights):
        if not path.is_file():
            raise BenchmarkDataError(f"{path} is missing: {folder} is not a supernet checkpoint (lanas_cifar.py "
                                     "--evaluation supernet writes one in its work directory)")
    try:
        meta = json.loads(meta_path.read_bytes())
        fields = dict(meta["space"])
        cls = SPACES[fields.pop("class")]
        space = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
        config = TrainConfig(**meta["train_config"])
        spec = meta["data"]
        split = dict(split_seed=int(spec["split_seed"]), validation_fraction=float(spec["validation_fraction"]))
        val_images, bn_batches, sha = int(spec["val_images"]), int(spec["bn_batches"]), spec["sha256"]
        train_images = int(spec["train_images"])
    except (ValueError, KeyError, TypeError) as e:
        raise BenchmarkDataError(f"{meta_path} is damaged ({type(e).__name__}: {e})") from None
    data = scoring_data(load_cifar10(data_dir, **split), val_images, bn_batches, config.batch_size)
    if fingerprint(data) != sha:
        raise BenchmarkDataError(f"the CIFAR-10 data read from {data.source} is not the data the supernet in "
                                 f"{folder} scores on (sha256 differs): give the --data-dir it was trained with")
    state = read_state(weights, space, config, train_images)
    return SupernetBenchmark(space, state, data, config, bn_batches, name=name or f"supernet:{folder}",
                             cache_file=cache_file)
