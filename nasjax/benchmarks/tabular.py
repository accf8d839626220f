"""Tabular benchmarks: every architecture of an enumerable space with its stored scores.

A `TabularBenchmark` holds a space and a table of scores aligned with `space.enumerate()`:
  table float32 (size, n_seeds): row `space.index(enc)`, one column per training seed, NaN = missing.
Queries are pure and jittable (they look rows up with `space.index`):
  query(enc, key)   -> float32 scalar, the score of one seed drawn uniformly with `key` among the
                       non-missing ones (as NAS-Bench-101's API does); NaN for an invalid encoding
  query_mean(enc)   -> float32 scalar, the mean over seeds (the denoised score)
  objective(noisy)  -> f(archs int (n, *encoding_shape), key) -> float32 (n,), for `nasjax.search`
Optional extras, where the benchmark has them:
  test_table float32 (size, n_seeds): test accuracy per seed -> query_test_mean(enc)
  curves float32 (size, n_seeds, epochs): score after each epoch (curves[..., -1] is `table`), for
    multi-fidelity strategies -> query_at(enc, key, budget), objective_at_budget()
Scores are higher-is-better (accuracies in percent for the shipped benchmarks).

The objectives' compiled programs take the tables as arguments (device arrays made once per
benchmark), so a table is not copied into every program as a constant. The `query*` methods read
the tables directly: inside a caller's jit they become constants of that program.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import warnings
from typing import Callable, ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from nasjax.spaces.base import Space


class BenchmarkDataError(ValueError):
    """A benchmark's data file is missing or corrupt; the message names the file and the problem."""


@runtime_checkable
class Benchmark(Protocol):
    """What every `nasjax.benchmarks.load(name, data_dir)` returns (`TabularBenchmark`, `NASBench101`).

    name         str, the name it was loaded by
    space        the `Space` whose encodings it scores
    objective(noisy=True) -> f(archs int (n, *encoding_shape), key) -> float32 (n,), for
                 `nasjax.search.run`; noisy=False scores the mean over training repeats
    optimum()    -> (encoding, its mean score) of the best stored architecture
    enumerate()  -> int32 (size, *encoding_shape), every stored architecture
    jittable     bool: the objective is traceable (searches on it run as `nasjax.search.scan`, vmapped
                 over seeds); False: it runs on the host (`nasjax.search.run`, e.g. a supernet)
    enumerable   bool: every architecture is stored, so optimum() and enumerate() answer (False for a
                 supernet over ~10^17 cells: both raise ValueError)
    """

    name: str
    space: Space
    jittable: bool
    enumerable: bool

    def objective(self, noisy: bool = True) -> Callable: ...

    def optimum(self) -> tuple[np.ndarray, float]: ...

    def enumerate(self) -> np.ndarray: ...


def data_folder(data_dir: str | os.PathLike | None, needed: str | os.PathLike) -> pathlib.Path:
    """The benchmark data folder: `data_dir`, else $NASJAX_DATA_DIR; BenchmarkDataError naming
    `needed` (the file to put there) when neither is given; ValueError naming data_dir when it is
    not a path, is empty, or is a file."""
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)) or not str(data_dir).strip():
            raise ValueError(f"data_dir must name a folder, got {data_dir!r}")
    data_dir = data_dir if data_dir is not None else os.environ.get("NASJAX_DATA_DIR") or None
    if data_dir is None:
        raise BenchmarkDataError(f"no data directory: pass data_dir or set NASJAX_DATA_DIR to the folder "
                                 f"holding {needed}")
    folder = pathlib.Path(data_dir).expanduser()
    if folder.is_file():
        raise ValueError(f"data_dir {folder} is a file, not the folder holding {needed}")
    return folder


def seed_mean(table: np.ndarray) -> np.ndarray:
    """Mean over seeds of a (size, n_seeds) table, ignoring NaN: float32 (size,), NaN where every
    seed is missing."""
    with warnings.catch_warnings():  # rows with every seed missing stay NaN, on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(table, axis=1).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class TabularBenchmark:
    """An enumerable space and its score table (immutable; the table is a read-only array).

    name   str, e.g. "nasbench201-cifar10"
    space  the enumerable `Space` whose `enumerate()` order the rows follow
    table  float32 (space.size(), n_seeds), NaN = missing
    source str, where the scores come from (file, protocol), for logs
    test_table float32 (size, n_seeds) or None: test accuracy per seed
    curves float32 (size, n_seeds, epochs) or None: score after each training epoch
    """

    name: str
    space: Space
    table: np.ndarray
    source: str = ""
    test_table: np.ndarray | None = None
    curves: np.ndarray | None = None
    scores_mean: np.ndarray = dataclasses.field(init=False, repr=False)  # float32 (size,), NaN if no seed
    members: np.ndarray = dataclasses.field(init=False, repr=False)  # int32 (size, *encoding_shape)
    jittable: ClassVar[bool] = True  # the `Benchmark` protocol's capabilities
    enumerable: ClassVar[bool] = True

    def __post_init__(self):
        table = np.array(self.table, np.float32)
        size = self.space.size()
        if table.ndim != 2 or table.shape[0] != size or table.shape[1] < 1:
            raise BenchmarkDataError(
                f"{self.name}: table has shape {table.shape}, expected ({size}, n_seeds >= 1) for "
                f"{type(self.space).__name__}")
        table.flags.writeable = False
        object.__setattr__(self, "table", table)
        for field, ndim in (("test_table", 2), ("curves", 3)):
            extra = getattr(self, field)
            if extra is None:
                continue
            extra = np.array(extra, np.float32)
            if extra.ndim != ndim or extra.shape[:2] != table.shape or 0 in extra.shape:
                raise BenchmarkDataError(f"{self.name}: {field} has shape {extra.shape}, expected "
                                         f"{table.shape}{' + (epochs,)' if ndim == 3 else ''}")
            extra.flags.writeable = False
            object.__setattr__(self, field, extra)
        mean = seed_mean(table)
        mean.flags.writeable = False
        object.__setattr__(self, "scores_mean", mean)
        members = np.array(self.space.enumerate(), np.int32)
        members.flags.writeable = False
        object.__setattr__(self, "members", members)

    @property
    def n_seeds(self) -> int:
        return self.table.shape[1]

    def __repr__(self) -> str:
        return (f"TabularBenchmark({self.name!r}, {type(self.space).__name__}, "
                f"{self.table.shape[0]} architectures x {self.n_seeds} seeds)")

    # --- pure, jittable ---------------------------------------------------------------------------
    def query(self, enc: jax.Array, key: jax.Array) -> jax.Array:
        """Score of one training seed of `enc`, drawn with `key`: float32 scalar (NaN if invalid)."""
        return _query(self.space, jnp.asarray(self.table), enc, key)

    def query_at(self, enc: jax.Array, key: jax.Array, budget: jax.Array) -> jax.Array:
        """Score of `enc` after ceil(budget) epochs (clipped to [1, epochs]) of one seed drawn with
        `key` (the seed `query` draws with that key): float32 scalar (NaN if invalid)."""
        curves = self._extra("curves")
        return _query_at(self.space, jnp.asarray(self.table), jnp.asarray(curves), enc, key, budget)

    def query_mean(self, enc: jax.Array) -> jax.Array:
        """Mean score over seeds of `enc`: float32 scalar (NaN if invalid)."""
        return _query_mean(self.space, jnp.asarray(self.scores_mean), enc)

    def query_test_mean(self, enc: jax.Array) -> jax.Array:
        """Mean test accuracy over seeds of `enc`: float32 scalar (NaN if invalid or all missing)."""
        mean = jnp.asarray(seed_mean(self._extra("test_table")))
        return jnp.where(self.space.is_valid(enc), mean[self.space.index(enc)], jnp.nan)

    def _extra(self, field: str) -> np.ndarray:
        value = getattr(self, field)
        if value is None:
            raise ValueError(f"{self.name} has no {field} (its data holds only the final scores)")
        return value

    @functools.cached_property
    def _device(self) -> dict[str, jax.Array]:
        """The tables as device arrays, made once: the objectives pass them to their programs."""
        arrays = {"table": self.table, "scores_mean": self.scores_mean, "curves": self.curves}
        return {k: jnp.asarray(v) for k, v in arrays.items() if v is not None}

    def objective(self, noisy: bool = True) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """Batched jitted objective (archs int (n, *encoding_shape), key) -> float32 (n,).

        noisy=True draws one seed per architecture (a fresh key each); noisy=False returns the means
        and ignores the key.
        """
        if noisy:
            table = self._device["table"]
            return lambda archs, key: _noisy_scores(self.space, table, archs, key)
        means = self._device["scores_mean"]
        return lambda archs, key: _mean_scores(self.space, means, archs)  # the key is not needed

    def objective_at_budget(self) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
        """Batched jitted multi-fidelity objective (archs int (n, *enc), key, budgets float (n,)
        epochs) -> float32 (n,): one seed per architecture (a fresh key each), read at its budget."""
        self._extra("curves")
        table, curves = self._device["table"], self._device["curves"]
        return lambda archs, key, budgets: _scores_at_budget(self.space, table, curves, archs, key,
                                                             budgets)

    # --- host side --------------------------------------------------------------------------------
    def enumerate(self) -> np.ndarray:
        """Every architecture, in table order: int32 (size, *encoding_shape)."""
        return self.members

    def optimum(self) -> tuple[np.ndarray, float]:
        """(encoding, mean score) of the best architecture by mean score (first one on ties)."""
        i = int(np.nanargmax(self.scores_mean))
        return self.enumerate()[i], float(self.scores_mean[i])


# --- the queries as functions of the tables (arguments of the objectives' programs) ------------------
def _seed(space: Space, table: jax.Array, enc: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(row index, seed drawn uniformly with `key` among the non-missing seeds of the row)."""
    i = space.index(enc)
    return i, jax.random.categorical(key, jnp.where(jnp.isnan(table[i]), -jnp.inf, 0.0))


def _query(space: Space, table: jax.Array, enc: jax.Array, key: jax.Array) -> jax.Array:
    i, seed = _seed(space, table, enc, key)
    return jnp.where(space.is_valid(enc), table[i, seed], jnp.nan)


def _query_at(space: Space, table: jax.Array, curves: jax.Array, enc: jax.Array, key: jax.Array,
              budget: jax.Array) -> jax.Array:
    i, seed = _seed(space, table, enc, key)
    epoch = jnp.clip(jnp.ceil(budget).astype(jnp.int32), 1, curves.shape[2]) - 1
    return jnp.where(space.is_valid(enc), curves[i, seed, epoch], jnp.nan)


def _query_mean(space: Space, means: jax.Array, enc: jax.Array) -> jax.Array:
    return jnp.where(space.is_valid(enc), means[space.index(enc)], jnp.nan)


@functools.partial(jax.jit, static_argnums=0)
def _noisy_scores(space: Space, table: jax.Array, archs: jax.Array, key: jax.Array) -> jax.Array:
    keys = jax.random.split(key, archs.shape[0])
    return jax.vmap(lambda enc, k: _query(space, table, enc, k))(archs, keys)


@functools.partial(jax.jit, static_argnums=0)
def _mean_scores(space: Space, means: jax.Array, archs: jax.Array) -> jax.Array:
    return jax.vmap(lambda enc: _query_mean(space, means, enc))(archs)


@functools.partial(jax.jit, static_argnums=0)
def _scores_at_budget(space: Space, table: jax.Array, curves: jax.Array, archs: jax.Array,
                      key: jax.Array, budgets: jax.Array) -> jax.Array:
    keys = jax.random.split(key, archs.shape[0])
    return jax.vmap(lambda enc, k, b: _query_at(space, table, curves, enc, k, b))(archs, keys, budgets)
